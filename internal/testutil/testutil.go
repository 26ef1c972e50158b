// Package testutil holds what the tests of several packages share: finding
// Debian's Python with FAISS and numpy, and running scripts with it.
//
// It is a normal (non-test) package only so that tests in different
// packages can import it; it must be imported by _test.go files alone,
// never by code that ships in the distillvq binary.
//
// The rule for a missing interpreter is the same in every package: the
// test is skipped, unless DISTILLVQ_REQUIRE_PYTHON is set to anything but
// "" or "0" (`make test` sets it to 1), which makes it a failure.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Interpreter is the Python the tests use: Debian's, where python3-faiss
// and python3-numpy install.
const Interpreter = "/usr/bin/python3"

// RequireEnv names the environment variable that turns a missing Python
// into a failure.
const RequireEnv = "DISTILLVQ_REQUIRE_PYTHON"

// probe reports, once per process, why the interpreter cannot be used
// (nil when it runs and imports faiss and numpy). Tests of this package
// replace it to simulate a missing interpreter.
var probe = newProbe(Interpreter)

func newProbe(py string) func() error {
	return sync.OnceValue(func() error {
		out, err := exec.Command(py, "-c", "import faiss, numpy").CombinedOutput()
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:] // the exception line of a traceback
		}
		if msg != "" {
			return fmt.Errorf("%s cannot import faiss and numpy (apt-get install python3-faiss python3-numpy): %v: %s", py, err, msg)
		}
		return fmt.Errorf("%s cannot import faiss and numpy (apt-get install python3-faiss python3-numpy): %v", py, err)
	})
}

// Required reports whether DISTILLVQ_REQUIRE_PYTHON asks for Python:
// set to anything but "" or "0".
func Required() bool {
	v := os.Getenv(RequireEnv)
	return v != "" && v != "0"
}

// Python returns the path of the Python interpreter when it runs and
// imports faiss and numpy (checked once per process). Otherwise it ends
// the test: with t.Fatalf when Required, else with t.Skipf, giving the
// reason either way.
func Python(t testing.TB) string {
	t.Helper()
	if err := probe(); err != nil {
		if Required() {
			t.Fatalf("%v (%s=%s)", err, RequireEnv, os.Getenv(RequireEnv))
		} else {
			t.Skipf("%v (set %s=1 to make this a failure)", err, RequireEnv)
		}
	}
	return Interpreter
}

// Run is one run of Python (through Python, so subject to its rule).
// Every run has OMP_WAIT_POLICY=PASSIVE in its environment: spinning
// OpenMP threads make FAISS training crawl on a busy machine.
type Run struct {
	Script string   // source code, run as python3 -c Script; or, when "",
	File   string   // a script file, relative to the test's directory
	Args   []string // sys.argv[1:]
	Env    []string // KEY=value pairs added to the test's environment
}

// Output runs r and returns its standard output. It ends the test with
// t.Fatalf, showing the standard error, when Python fails.
func (r Run) Output(t testing.TB) []byte {
	t.Helper()
	py := Python(t)
	what := r.File
	args := append([]string{r.File}, r.Args...)
	if r.Script != "" {
		what = "-c script"
		args = append([]string{"-c", r.Script}, r.Args...)
	}
	cmd := exec.Command(py, args...)
	cmd.Env = append(append(os.Environ(), "OMP_WAIT_POLICY=PASSIVE"), r.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s %s: %v\n%s", py, what, strings.Join(r.Args, " "), err, stderr.Bytes())
	}
	return out
}

// RunPython runs python3 -c script with args as sys.argv[1:] and returns
// its standard output (see Run).
func RunPython(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	return Run{Script: script, Args: args}.Output(t)
}

// RunPythonFile runs the script file path with args as sys.argv[1:] and
// returns its standard output (see Run).
func RunPythonFile(t testing.TB, path string, args ...string) []byte {
	t.Helper()
	return Run{File: path, Args: args}.Output(t)
}
