package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
)

// TestLibraryErrorsAreTheCLIs checks that a Go program giving the library an
// invalid option gets the one line the command gives for the same value:
// the checks live in the library, and the command only parses flags.
func TestLibraryErrorsAreTheCLIs(t *testing.T) {
	docs, err := faissio.OpenSource(gloveDocs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		opts func(*build.Options)
		code int // the command's exit code: 2 for what no data could fix
	}{
		{[]string{"--nlist", "-3"}, func(o *build.Options) { o.Nlist = -3 }, 2},
		{[]string{"--m", "-2"}, func(o *build.Options) { o.M = -2 }, 2},
		{[]string{"--train-size", "-5"}, func(o *build.Options) { o.TrainSize = -5 }, 2},
		{[]string{"--resume"}, func(o *build.Options) { o.Resume = true }, 2},
		{[]string{"--opq", "--index", "ivfflat"}, func(o *build.Options) { o.OPQ, o.Index = true, build.IVFFlat }, 2},
		{[]string{"--train", "faiss", "--checkpoint", "ck"}, func(o *build.Options) { o.Train, o.Checkpoint = build.FAISS, "ck" }, 2},
		{[]string{"--temperature", "-1"}, func(o *build.Options) { o.Distill.Temperature = -1 }, 2},
		{[]string{"--epochs", "-1"}, func(o *build.Options) { o.Distill.Epochs = -1 }, 2},
		{[]string{"--in-batch", "-4"}, func(o *build.Options) { o.Distill.InBatch = -4 }, 2},
		{[]string{"--nlist", "20001"}, func(o *build.Options) { o.Nlist = 20001 }, 1},
		{[]string{"--m", "7"}, func(o *build.Options) { o.M = 7 }, 1},
		{[]string{"--train-size", "50", "--nlist", "100"}, func(o *build.Options) { o.TrainSize, o.Nlist = 50, 100 }, 1},
		{[]string{"--max-memory", "20MB"}, func(o *build.Options) { o.MaxMemory = 20e6 }, 1},
	} {
		code, _, stderr := run(t, append([]string{"build", "--docs", gloveDocs, "-o", t.TempDir() + "/x.faiss"}, c.args...)...)
		cliMsg := strings.TrimSuffix(strings.TrimPrefix(stderr, "distillvq: "), "\n")
		var o build.Options
		c.opts(&o)
		_, _, err := build.Run(context.Background(), docs, o)
		if err == nil {
			t.Errorf("%v: the library accepted it", c.args)
			continue
		}
		if code != c.code || cliMsg != err.Error() {
			t.Errorf("%v: the command says %q (exit %d), the library %q", c.args, cliMsg, code, err)
		}
	}
	// Enums out of range, which only a program can pass, name the option
	// and its choices as the command's parse errors do.
	for _, o := range []build.Options{{Index: 7}, {Train: -1}, {ExportLists: 3}} {
		if _, _, err := build.Run(context.Background(), docs, o); err == nil || !strings.Contains(err.Error(), ": want ") {
			t.Errorf("%+v: %v", o, err)
		}
	}
	code, _, stderr := run(t, "build", "--docs", gloveDocs, "-o", "x.faiss", "--index", "ivfpq-typo")
	if code != 2 || stderr != "distillvq: --index \"ivfpq-typo\": want ivfpq, ivfflat, ivfpqfs, pq or pqfs\n" {
		t.Errorf("--index ivfpq-typo: exit %d, %q", code, stderr)
	}
}

// TestHelpShowsEachDefaultOnce checks every command's --help: an option's
// default appears once, in its own words, never as urfave's "(default: 0)"
// beside a default the usage already states.
func TestHelpShowsEachDefaultOnce(t *testing.T) {
	for _, cmd := range []string{"build", "eval", "search", "inspect"} {
		code, out, _ := run(t, cmd, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, line := range strings.Split(out, "\n") {
			if n := strings.Count(line, "default"); n > 1 || strings.Contains(line, "(default: 0)") {
				t.Errorf("%s --help: %q", cmd, strings.TrimSpace(line))
			}
		}
	}
}
