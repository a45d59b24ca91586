// Package helmtest checks the Helm chart in deploy/helm/pano by rendering
// it with Helm's Go SDK: every object decodes strictly into its Kubernetes
// (or operator) type, and the wiring (ports, topics, environment
// variables, rules, dashboards, images) agrees with the rest of the
// repository. No cluster is needed.
//
// The chart cannot read files outside its folder once packaged, so it
// carries copies of the repository's rules, dashboards and configuration
// (ChartCopies); `go generate ./deploy/helmtest` refreshes them and a test
// fails while any differs.
package helmtest

//go:generate go run ./cmd/chartsync
