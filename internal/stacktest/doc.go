// Package stacktest checks the demo stack as files: docker-compose.yml is
// loaded and validated by the Compose specification library, and its
// wiring (ports, addresses, Kafka topics, metric endpoints, Grafana
// datasource uids, images and Dockerfiles) is compared with what every
// component's own configuration and code say. No Docker engine is needed:
// the checks read the repository and run the components' --help.
package stacktest
