// Command distillvq-beam is distillvq whose build also runs on Apache Beam
// (build --runner prism|dataflow|flink|spark|universal): it trains where it
// is launched, then encodes the shards and merges the parts on the runner's
// workers (package distill/distributed). It is a command of its own so that
// distillvq does not carry Beam's 300 modules. Beam starts this same binary
// as its worker (--worker), which it hands to Beam's harness.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	ucli "github.com/urfave/cli/v3"

	"github.com/distillvq/distillvq/cli"
	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/distill/distributed"
)

func main() {
	if worker(os.Args[1:]) {
		// Beam runs this binary as its worker: its flags are Beam's, and
		// beam.Init runs the harness until the runner is done with it.
		flag.Parse()
		beam.Init()
		return
	}
	cli.Exec(engine{})
}

// worker reports whether Beam started this process as its SDK harness.
func worker(args []string) bool {
	for _, a := range args {
		if a == "--worker" || strings.HasPrefix(a, "--worker=") {
			return a != "--worker=false"
		}
	}
	return false
}

// engine is the Apache Beam engine of build --runner.
type engine struct{}

func (engine) Name() string { return "distillvq-beam" }

func (engine) Flags() []ucli.Flag {
	cat := "distributed (Apache Beam)"
	return []ucli.Flag{
		&ucli.StringFlag{Name: "runner", Category: cat, Usage: "encode and merge on Apache Beam: prism (in this process), dataflow, flink, spark or universal"},
		&ucli.StringFlag{Name: "endpoint", Category: cat, Usage: "the runner's job service, host:port (flink, spark, universal; prism starts its own)"},
		&ucli.StringFlag{Name: "environment-type", Category: cat, Usage: "how the runner starts workers: LOOPBACK, PROCESS, DOCKER or EXTERNAL (Beam's --environment_type)"},
		&ucli.StringFlag{Name: "environment-config", Category: cat, Usage: "the worker environment: a container image, or a PROCESS command (Beam's --environment_config)"},
		&ucli.StringSliceFlag{Name: "beam", Category: cat, Usage: "any other Beam pipeline option, as name=value (repeatable), e.g. --beam project=P --beam region=R --beam temp_location=gs://B/tmp --beam worker_binary=/path/distillvq-beam"},
		&ucli.StringFlag{Name: "work", Category: cat, Usage: "folder every worker can read and write, for the trained index, parts and segments (default OUTPUT.work)"},
		&ucli.IntFlag{Name: "shard-rows", Category: cat, HideDefault: true, Usage: "rows per shard, a worker's unit of work (default 1048576; the report gives a worker's memory for it)"},
		&ucli.IntFlag{Name: "workers", Category: cat, HideDefault: true, Usage: "branches the shards are dealt to, run at once on Prism (default 1)"},
		&ucli.IntFlag{Name: "merge-ranges", Category: cat, HideDefault: true, Usage: "ranges of lists merged by the workers before the final concatenation (default 4)"},
		&ucli.IntFlag{Name: "attempts", Category: cat, HideDefault: true, Usage: "runs of the pipeline before the build fails; a rerun keeps the parts made (default 3)"},
	}
}

func (engine) Build(ctx context.Context, c *ucli.Command, docs, out string, o build.Options, progress func(string, int, int)) (string, any, error) {
	opts := map[string]string{"runner": c.String("runner")}
	for _, f := range [][2]string{{"endpoint", "endpoint"}, {"environment-type", "environment_type"}, {"environment-config", "environment_config"}} {
		if v := c.String(f[0]); v != "" {
			opts[f[1]] = v
		}
	}
	for _, kv := range c.StringSlice("beam") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", nil, fmt.Errorf("--beam %q: want name=value", kv)
		}
		opts[strings.TrimPrefix(k, "--")] = v
	}
	for k, v := range opts {
		if flag.Lookup(k) == nil {
			return "", nil, fmt.Errorf("--beam %s: not a Beam pipeline option", k)
		}
		if err := flag.Set(k, v); err != nil {
			return "", nil, fmt.Errorf("Beam option %s=%s: %v", k, v, err)
		}
	}
	// Beam's runners log every stage at INFO: a build says what it did
	// itself, and keeps Beam's warnings and errors.
	beamlog.LogLevel = "warn"
	beam.Init()
	rep, err := distributed.Build(ctx, docs, out, distributed.Options{
		Build: o, Work: c.String("work"), ShardRows: c.Int("shard-rows"), Workers: c.Int("workers"),
		Ranges: c.Int("merge-ranges"), Attempts: c.Int("attempts"), Progress: progress,
		Execute: beamx.Run,
	})
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "wrote %s: %d vectors of d=%d in %d shards on %s, %d bytes\n", out, rep.Rows, rep.Train.D, rep.Shards, c.String("runner"), rep.Bytes)
	fmt.Fprintf(&b, "trainer %s: train %.2fs here; pipeline %.2fs (%d attempt(s)); a worker needs about %s for one shard\n",
		rep.Train.Train, rep.TrainTime.Seconds(), rep.Pipeline.Seconds(), rep.Attempts, build.ShowBytes(rep.ShardMemory))
	return b.String(), rep, nil
}
