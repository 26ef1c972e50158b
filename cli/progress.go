package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress draws one bar per long phase on a terminal and is silent
// otherwise, so logs and pipes stay clean.
type progress struct {
	w       io.Writer
	enabled bool
	phase   string
	bar     *progressbar.ProgressBar
}

func newProgress(e *env) *progress { return &progress{w: e.stderr, enabled: e.interactive} }

// update moves the bar of phase to done out of total, starting a new bar when
// the phase changes. A phase may carry live figures after a colon
// ("distill: loss 2.1"): they update the bar's label, not start a new bar,
// so its elapsed and remaining times run on.
func (p *progress) update(phase string, done, total int) {
	if !p.enabled {
		return
	}
	key, _, _ := strings.Cut(phase, ":")
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
		p.phase = ""
	}
}
