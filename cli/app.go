// Package cli implements the distillvq command: build FAISS IVF indexes from
// dense embeddings, search and inspect them, and compare their recall.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/distill/build"
)

// failure marks an error found while doing the work (bad input, FAISS
// errors), as opposed to a malformed command line: the former exits 1, the
// latter 2.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// fail wraps err as a failure; nil stays nil.
func fail(err error) error {
	if err == nil {
		return nil
	}
	return failure{err}
}

// failf formats a failure.
func failf(format string, args ...any) error { return failure{fmt.Errorf(format, args...)} }

// env is what a command run writes to and whether it may draw progress bars.
type env struct {
	stdout, stderr io.Writer
	interactive    bool   // stderr is a terminal
	engine         Engine // runs build --runner; nil in distillvq
}

// Main runs the distillvq command line args (args[0] is the program name)
// and returns the process exit code: 0 on success, 1 when the work failed,
// 2 for a malformed command line, 130 when ctx was cancelled (an interrupt).
// Errors are printed to stderr as one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainWith(ctx, args, stdout, stderr, nil)
}

// An Engine runs a build's encoding and merging elsewhere than in this
// process: distillvq-beam's Apache Beam pipeline (package
// distill/distributed). The plain distillvq has none, so that it does not
// carry Beam's 300 modules.
type Engine interface {
	// Name is the command's name ("distillvq-beam").
	Name() string
	// Flags are the engine's own build flags; one of them is --runner.
	Flags() []ucli.Flag
	// Build runs the distributed build of the documents at docs into out,
	// for the build command c whose --runner is set, and returns what to
	// print of it and its report for --report-json.
	Build(ctx context.Context, c *ucli.Command, docs, out string, o build.Options, progress func(string, int, int)) (string, any, error)
}

// MainWith is Main with a distributed engine for build --runner (nil:
// none).
func MainWith(ctx context.Context, args []string, stdout, stderr io.Writer, eng Engine) int {
	e := &env{stdout: stdout, stderr: stderr, interactive: isTerminal(stderr), engine: eng}
	name := "distillvq"
	if eng != nil {
		name = eng.Name()
	}
	cmd := &ucli.Command{
		Name:           name,
		Usage:          "build FAISS IVF indexes whose centroids and codebooks are trained for retrieval",
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(context.Context, *ucli.Command, error) {},
		Commands: []*ucli.Command{
			buildCommand(e),
			trainCommand(e),
			addCommand(e),
			mergeCommand(e),
			searchCommand(e),
			inspectCommand(e),
			evalCommand(e),
			doctorCommand(e),
			blasCheckCommand(e),
		},
	}
	for _, sub := range cmd.Commands {
		sub.OnUsageError = usageError
		sub.Action = refuseStrayArgs(warnSlowBLAS(e, sub.Name, sub.Action))
	}
	cmd.OnUsageError = usageError
	err := cmd.Run(ctx, args)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "distillvq: interrupted")
		return 130
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	fmt.Fprintf(stderr, "distillvq: %s\n", msg)
	var f failure
	if errors.As(err, &f) {
		return 1
	}
	return 2
}

// refuseStrayArgs makes a command line with words no flag or argument took
// a usage error (exit 2): urfave/cli leaves them as positional arguments
// that no command reads, so "build ... --opq learn" would build a plain
// --opq index and say nothing of "learn".
func refuseStrayArgs(action ucli.ActionFunc) ucli.ActionFunc {
	return func(ctx context.Context, c *ucli.Command) error {
		if c.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q (see %s --help)", c.Args().First(), c.FullName())
		}
		return action(ctx, c)
	}
}

// usageError returns a command-line mistake as one line that points to the
// help, instead of printing the whole help text.
func usageError(_ context.Context, cmd *ucli.Command, err error, _ bool) error {
	return fmt.Errorf("%w (see %s --help)", err, cmd.FullName())
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
