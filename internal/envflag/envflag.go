// Package envflag gives every PANO command the same settings rules: each
// flag can also be set by an environment variable, the flag's name in
// upper case with '-' as '_' after the command's prefix (-pca-filter is
// PCA_FILTER, -shim-logs is SHIM_LOGS); a flag on the command line wins
// over its variable; an empty variable counts as unset; a value that does
// not parse is an error at start that names the variable, never a silent
// default; and a stray argument is an error.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/peterbourgon/ff/v3"
)

// Parse sets fs's flags from args, then the flags args left unset from
// their environment variables (see Var). It returns flag.ErrHelp for
// -h or -help, after fs's usage was printed.
func Parse(fs *flag.FlagSet, args []string, prefix string) error {
	opts := []ff.Option{ff.WithEnvVars()}
	if prefix != "" {
		opts = []ff.Option{ff.WithEnvVarPrefix(strings.TrimSuffix(prefix, "_"))}
	}
	if err := ff.Parse(fs, args, opts...); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return flag.ErrHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: settings are flags or environment variables (see -help)", fs.Arg(0))
	}
	return nil
}

// Var returns the environment variable of the flag name under prefix.
func Var(prefix, name string) string {
	v := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(name))
	if prefix == "" {
		return v
	}
	return strings.TrimSuffix(prefix, "_") + "_" + v
}

// Usage returns a usage function for fs: intro, then each flag with its
// variable, its help and its default.
func Usage(fs *flag.FlagSet, prefix, intro string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprint(w, intro)
		fmt.Fprintf(w, "\nEvery flag can also be set by its environment variable; the flag wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  -%s, %s", f.Name, Var(prefix, f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "\n      %s\n", f.Usage)
		})
	}
}
