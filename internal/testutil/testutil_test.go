package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeTB records how a helper ended a test; Fatalf and Skipf stop the
// goroutine as the real ones do.
type fakeTB struct {
	testing.TB
	ended string // "fatal", "skip" or "" for returned
	msg   string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.ended, f.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.ended, f.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// call runs fn with a fakeTB in its own goroutine, as testing runs a test.
func call(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// withProbe makes Python probe py instead of the real interpreter.
func withProbe(t *testing.T, py string) {
	old := probe
	probe = newProbe(py)
	t.Cleanup(func() { probe = old })
}

func TestPythonMissing(t *testing.T) {
	withProbe(t, "/nonexistent/python3")
	for _, c := range []struct{ env, want string }{
		{"", "skip"}, {"0", "skip"}, {"1", "fatal"}, {"yes", "fatal"},
	} {
		t.Setenv(RequireEnv, c.env)
		f := call(t, func(tb testing.TB) { Python(tb) })
		if f.ended != c.want || !strings.Contains(f.msg, "/nonexistent/python3") || !strings.Contains(f.msg, "no such file") {
			t.Errorf("%s=%q: ended %q with %q, want %s naming the interpreter and why", RequireEnv, c.env, f.ended, f.msg, c.want)
		}
		// RunPython goes through the same rule.
		if f := call(t, func(tb testing.TB) { RunPython(tb, "print(1)") }); f.ended != c.want {
			t.Errorf("%s=%q: RunPython ended %q, want %s", RequireEnv, c.env, f.ended, c.want)
		}
	}
}

func TestPythonWithoutFAISS(t *testing.T) {
	// An interpreter that runs but cannot import: the reason given is the
	// exception line of its traceback.
	py := filepath.Join(t.TempDir(), "python3")
	fake := "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho \"ModuleNotFoundError: No module named 'faiss'\" >&2\nexit 1\n"
	if err := os.WriteFile(py, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	withProbe(t, py)
	t.Setenv(RequireEnv, "1")
	f := call(t, func(tb testing.TB) { Python(tb) })
	if f.ended != "fatal" || !strings.Contains(f.msg, "exit status 1: ModuleNotFoundError: No module named 'faiss'") ||
		strings.Contains(f.msg, "Traceback") {
		t.Errorf("ended %q with %q", f.ended, f.msg)
	}
}

func TestRunPython(t *testing.T) {
	if got := Python(t); got != Interpreter {
		t.Fatalf("Python = %q", got)
	}
	out := RunPython(t, "import sys, os, faiss, numpy\nprint(sys.argv[1:], os.environ['OMP_WAIT_POLICY'])", "a", "b c")
	if got := string(out); got != "['a', 'b c'] PASSIVE\n" {
		t.Errorf("RunPython printed %q", got)
	}
	out = Run{Script: "import os\nprint(os.environ['X'])", Env: []string{"X=7"}}.Output(t)
	if string(out) != "7\n" {
		t.Errorf("Run with Env printed %q", out)
	}
	dir := t.TempDir()
	script := dir + "/s.py"
	RunPython(t, "import sys\nopen(sys.argv[1], 'w').write('import sys\\nprint(len(sys.argv))\\n')", script)
	if out := RunPythonFile(t, script, "x", "y"); string(out) != "3\n" {
		t.Errorf("RunPythonFile printed %q", out)
	}

	// A failing script fails the test, with its standard error.
	f := call(t, func(tb testing.TB) { RunPython(tb, "import sys\nsys.stderr.write('boom')\nsys.exit(3)", "arg") })
	if f.ended != "fatal" || !strings.Contains(f.msg, "boom") || !strings.Contains(f.msg, "exit status 3") || !strings.Contains(f.msg, "arg") {
		t.Errorf("failing script ended %q with %q", f.ended, f.msg)
	}
}
