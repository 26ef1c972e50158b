package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	ucli "github.com/urfave/cli/v3"
)

// progressFlag chooses how long phases are reported.
func progressFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "progress", Value: "auto",
		Usage: "auto (a bar on a terminal, nothing otherwise), bar, log (a line on stderr per phase and per tenth of it, for batch jobs) or none"}
}

// progress reports long phases: one bar per phase on a terminal, or lines
// for logs, or nothing, so pipes stay clean unless asked.
type progress struct {
	w     io.Writer
	mode  string // "bar", "log" or "none"
	phase string
	bar   *progressbar.ProgressBar
	tenth int // the last tenth logged in this phase
	start time.Time
	// delay slows the updates of one phase, for the interrupt tests only
	// (DISTILLVQ_TEST_PHASE_DELAY=phase=duration): a phase that takes
	// milliseconds here can then be interrupted while it runs.
	delayPhase string
	delay      time.Duration
}

func newProgress(e *env, mode string) (*progress, error) {
	p := &progress{w: e.stderr, mode: mode}
	switch mode {
	case "auto":
		p.mode = "none"
		if e.interactive {
			p.mode = "bar"
		}
	case "bar", "log", "none":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, bar, log or none", mode)
	}
	if v := os.Getenv("DISTILLVQ_TEST_PHASE_DELAY"); v != "" {
		phase, d, _ := strings.Cut(v, "=")
		if dur, err := time.ParseDuration(d); err == nil {
			p.delayPhase, p.delay = phase, dur
		}
	}
	return p, nil
}

// update moves the report of phase to done out of total, starting a new one
// when the phase changes. A phase may carry live figures after a colon
// ("distill: loss 2.1"): they update the bar's label, not start a new bar,
// so its elapsed and remaining times run on.
func (p *progress) update(phase string, done, total int) {
	key, _, _ := strings.Cut(phase, ":")
	if key == p.delayPhase {
		time.Sleep(p.delay)
	}
	switch p.mode {
	case "log":
		p.log(key, phase, done, total)
	case "bar":
		p.draw(key, phase, done, total)
	}
}

// log writes a line when a phase starts, at each tenth of it, and whenever
// its live figures change.
func (p *progress) log(key, phase string, done, total int) {
	tenth := 0
	if total > 0 {
		tenth = 10 * done / total
	}
	switch {
	case key != p.phase:
		p.phase, p.tenth, p.start = key, tenth, time.Now()
	case phase != key || tenth > p.tenth:
		p.tenth = tenth
	default:
		return
	}
	fmt.Fprintf(p.w, "distillvq: %s %d/%d (%.1fs)\n", phase, done, total, time.Since(p.start).Seconds())
}

func (p *progress) draw(key, phase string, done, total int) {
	if key != p.phase || p.bar == nil {
		p.finish()
		p.phase = key
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%-14s", phase)),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Describe(fmt.Sprintf("%-14s", phase))
	_ = p.bar.Set(done)
}

// finish closes the current bar, if any.
func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
	p.phase = ""
}
