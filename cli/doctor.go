package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v3"
	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	faiss "github.com/distillvq/distillvq/cgo"
)

// Every product in distillvq and in FAISS runs on OpenBLAS, and a
// DYNAMIC_ARCH OpenBLAS (Debian's) picks its kernels by CPU model when it is
// loaded: on a model it does not know it falls back to Prescott (SSE3), 4-5x
// slower than the AVX-512 kernels on a recent Xeon. OPENBLAS_CORETYPE
// overrides the choice, but only at load time, so this file can tell the
// user, not fix it: the computing commands warn in one line, and doctor
// measures each core type in a child process of its own.

// coreEnv is the variable OpenBLAS reads, once, when it is loaded.
const coreEnv = "OPENBLAS_CORETYPE"

// blasCheckEnv marks doctor's child processes, so that the hidden blas-check
// command runs only as one, and doctor never spawns itself recursively.
const blasCheckEnv = "DISTILLVQ_BLAS_CHECK"

// levelNames name the x86 feature levels OpenBLAS's kernels are written for,
// lowest first; a kernel's level is the newest instructions it uses.
var levelNames = []string{"SSE2", "SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "AVX2+FMA", "AVX-512"}

// coreType is one of OpenBLAS 0.3.21's x86-64 core types (the names
// driver/others/dynamic.c accepts in OPENBLAS_CORETYPE).
type coreType struct {
	name  string
	level int // index in levelNames
	// needs are the CPU features (cpuFeatures' names) its kernels execute.
	needs []string
	// try says doctor measures it. The others are older or AMD-only
	// (Bulldozer's family needs FMA4, which x/sys/cpu cannot see) and never
	// the best choice on a CPU that could run the ones tried; they are
	// known here only to judge a core OpenBLAS reports.
	try bool
}

var avx512 = []string{"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}

// coreTypes is ordered by level, then by preference within it.
var coreTypes = []coreType{
	{name: "Katmai"}, {name: "Coppermine"}, {name: "Northwood"}, {name: "Banias"}, {name: "Athlon"}, {name: "Opteron"},
	{name: "Prescott", level: 1, needs: []string{"sse3"}, try: true},
	{name: "Opteron_SSE3", level: 1}, {name: "Barcelona", level: 1}, {name: "Nano", level: 1},
	{name: "Core2", level: 2, needs: []string{"ssse3"}, try: true},
	{name: "Atom", level: 2}, {name: "Bobcat", level: 2},
	{name: "Penryn", level: 3, needs: []string{"sse4.1"}, try: true},
	{name: "Dunnington", level: 3},
	{name: "Nehalem", level: 4, needs: []string{"sse4.2"}, try: true},
	{name: "Sandybridge", level: 5, needs: []string{"avx"}, try: true},
	{name: "Bulldozer", level: 5}, {name: "Piledriver", level: 5}, {name: "Steamroller", level: 5}, {name: "Excavator", level: 5},
	{name: "Haswell", level: 6, needs: []string{"avx2", "fma"}, try: true},
	{name: "Zen", level: 6, needs: []string{"avx2", "fma"}, try: true},
	{name: "SkylakeX", level: 7, needs: avx512, try: true},
	{name: "Cooperlake", level: 7, needs: append(slices.Clone(avx512), "avx512bf16"), try: true},
}

// findCore looks a core name up as OpenBLAS does, ignoring case.
func findCore(name string) (coreType, bool) {
	for _, c := range coreTypes {
		if strings.EqualFold(c.name, name) {
			return c, true
		}
	}
	return coreType{}, false
}

// cpuFeatures are the features that tell OpenBLAS's kernels apart, in the
// order doctor lists them. x/sys/cpu counts AVX and AVX-512 only when the
// OS saves their registers, as OpenBLAS's own check does.
var cpuFeatures = []struct {
	name string
	has  *bool
}{
	{"sse3", &cpu.X86.HasSSE3}, {"ssse3", &cpu.X86.HasSSSE3}, {"sse4.1", &cpu.X86.HasSSE41}, {"sse4.2", &cpu.X86.HasSSE42},
	{"avx", &cpu.X86.HasAVX}, {"avx2", &cpu.X86.HasAVX2}, {"fma", &cpu.X86.HasFMA},
	{"avx512f", &cpu.X86.HasAVX512F}, {"avx512cd", &cpu.X86.HasAVX512CD}, {"avx512bw", &cpu.X86.HasAVX512BW},
	{"avx512dq", &cpu.X86.HasAVX512DQ}, {"avx512vl", &cpu.X86.HasAVX512VL}, {"avx512bf16", &cpu.X86.HasAVX512BF16},
}

// hasFeature reports a feature by its cpuFeatures name.
func hasFeature(name string) bool {
	for _, f := range cpuFeatures {
		if f.name == name {
			return *f.has
		}
	}
	return false
}

// missing lists what the CPU lacks of c's needs.
func (c coreType) missing() []string {
	var m []string
	for _, f := range c.needs {
		if !hasFeature(f) {
			m = append(m, f)
		}
	}
	return m
}

// supported reports whether this CPU can run c's kernels.
func (c coreType) supported() bool { return c.try && len(c.missing()) == 0 }

// cpuLevel is the highest level among the core types tried that this CPU
// runs, -1 when it runs none (not x86-64).
func cpuLevel() int {
	best := -1
	for _, c := range coreTypes {
		if c.supported() {
			best = max(best, c.level)
		}
	}
	return best
}

// bestCore names the core type to suggest for the CPU's highest level:
// Zen on AMD's AVX2 CPUs, where OpenBLAS tunes its blocking for them, the
// first of the level otherwise.
func bestCore() (coreType, bool) {
	level := cpuLevel()
	var found []coreType
	for _, c := range coreTypes {
		if c.supported() && c.level == level {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return coreType{}, false
	}
	if v := cpuInfo().vendor; v == "AuthenticAMD" || v == "HygonGenuine" {
		for _, c := range found {
			if c.name == "Zen" {
				return c, true
			}
		}
	}
	return found[0], true
}

// cpuInfo is what /proc/cpuinfo says of the first CPU; empty elsewhere.
var cpuInfo = sync.OnceValue(func() (info struct{ model, vendor string }) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return info
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case k == "model name" && info.model == "":
			info.model = v
		case k == "vendor_id" && info.vendor == "":
			info.vendor = v
		}
	}
	return info
})

// slowBLAS returns, as one line, why the OpenBLAS described by b runs slower
// kernels than this CPU supports and what to set; "" when it runs the best
// level, or a core this file does not know (another architecture).
func slowBLAS(b faiss.BLASInfo) string {
	cur, ok := findCore(b.Core)
	if !ok {
		return ""
	}
	best, ok := bestCore()
	if !ok || cur.level >= best.level {
		return ""
	}
	why := "OpenBLAS's choice for this CPU model"
	if v, set := os.LookupEnv(coreEnv); set {
		why = "as " + coreEnv + "=" + v + " asks"
	}
	msg := fmt.Sprintf("OpenBLAS runs its %s kernels (%s, %s) but this CPU has %s", b.Core, levelNames[cur.level], why, levelNames[best.level])
	if !b.DynamicArch {
		return msg + fmt.Sprintf(": this OpenBLAS has no other kernels (no DYNAMIC_ARCH), so %s cannot help; install a DYNAMIC_ARCH build (Debian's libopenblas0-pthread)", coreEnv)
	}
	return msg + fmt.Sprintf(": set %s=%s for faster products (distillvq doctor measures each core type)", coreEnv, best.name)
}

// slowBLASReport is slowBLAS for make bench's machine table: the core of
// the OpenBLAS distillvq loads here and its warning, and the warning for one
// another process reported by core name and configuration string (Python
// FAISS's); "" where the kernels are the CPU's best.
func slowBLASReport(otherCore, otherConfig string) (core, ours, other string) {
	b := faiss.OpenBLAS()
	if otherCore != "" {
		other = slowBLAS(faiss.BLASInfo{Core: otherCore, Config: otherConfig, DynamicArch: slices.Contains(strings.Fields(otherConfig), "DYNAMIC_ARCH")})
	}
	return b.Core, slowBLAS(b), other
}

// quietBLASEnv, set to anything, silences the slow-kernel warning, for
// scripts that read stderr line by line (and the tests of other
// behaviour, which run on whatever kernels the CI machine gets).
const quietBLASEnv = "DISTILLVQ_QUIET_BLAS"

// computes names the commands whose time goes into BLAS products.
var computes = []string{"build", "eval", "search", "train", "add", "merge"}

// warnSlowBLAS makes a computing command print slowBLAS's line on stderr
// before it starts; other commands' actions are returned as they are.
func warnSlowBLAS(e *env, name string, action ucli.ActionFunc) ucli.ActionFunc {
	if !slices.Contains(computes, name) {
		return action
	}
	return func(ctx context.Context, c *ucli.Command) error {
		if os.Getenv(quietBLASEnv) != "" {
			return action(ctx, c)
		}
		if msg := slowBLAS(faiss.OpenBLAS()); msg != "" {
			fmt.Fprintf(e.stderr, "distillvq: warning: %s\n", msg)
		}
		return action(ctx, c)
	}
}

// The sgemm that doctor times for each core type, on one thread: large
// enough for OpenBLAS's blocked kernels (k spans more than one of their
// k-blocks), small enough that the slowest kernel tried (Prescott, 10-15
// GFlops on one core of an EPYC) takes 0.05 s a run. 750 = 2·3·5³ leaves a
// remainder at every power-of-two tile, so the edges are checked too. One thread,
// because that is how distillvq's own kernels call OpenBLAS (SerialBLAS),
// because threads do not change which kernel is fastest, and because a
// two-thread product on a busy machine measures the scheduler instead.
const (
	checkM, checkK, checkN = 750, 512, 750
	// The best time counts, of at least checkReps timed runs after an
	// untimed warm-up, and of as many more as fit in checkTime: on a
	// shared machine one 30 ms product is too easily slowed by a neighbour.
	checkReps = 3
	checkTime = 300 * time.Millisecond
	// sameSpeed is how much faster another core type of the same level
	// must measure than the one loaded to be worth setting: less is
	// within the noise of such short runs.
	sameSpeed = 1.2
)

// gammaK is Higham's γ_k = ku/(1-ku) for float32 (u = 2⁻²⁴, the unit
// roundoff) and the check's k: a float32 sum of k products, added in any
// order and with or without FMA, is within γ_k Σ_l |a_il||b_lj| of the exact
// sum (Higham, Accuracy and Stability of Numerical Algorithms, §3.1).
// That is what "within float32 rounding" means here: an error no sequence of
// correctly rounded float32 operations could exceed. A right kernel's error
// is far below it, its roundings mostly cancelling; a wrong one (a term
// dropped, doubled or rounded to half precision) is far above it.
const gammaK = checkK * 0x1p-24 / (1 - checkK*0x1p-24)

// sgemmInputs are the check's A (m×k) and B (k×n), uniform in [-1, 1) and
// the same in every process, so that the parent's float64 product is the
// reference for every child's.
func sgemmInputs() (a, b []float32) {
	r := rand.New(rand.NewPCG(18, 18))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(2*r.Float64() - 1)
		}
		return x
	}
	return fill(checkM * checkK), fill(checkK * checkN)
}

// reference returns the float64 products A B and |A||B|, the exact result
// to compare with and the scale of each entry's bound. Float32 inputs are
// exact in float64, whose own rounding is 2⁻²⁹ of float32's.
func reference(a, b []float32) (prod, scale []float64) {
	gemm := func(abs bool) []float64 {
		wide := func(x []float32, rows, cols int) blas64.General {
			y := make([]float64, len(x))
			for i, v := range x {
				y[i] = float64(v)
				if abs {
					y[i] = math.Abs(y[i])
				}
			}
			return blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: y}
		}
		c := blas64.General{Rows: checkM, Cols: checkN, Stride: checkN, Data: make([]float64, checkM*checkN)}
		blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, wide(a, checkM, checkK), wide(b, checkK, checkN), 0, c)
		return c.Data
	}
	return gemm(false), gemm(true)
}

// blasCheckHeader is the first line a blas-check child writes; the m×n
// float32 product follows, little-endian.
type blasCheckHeader struct {
	Core    string    `json:"core"`
	Threads int       `json:"threads"`
	Seconds []float64 `json:"seconds"`
}

// blasCheckCommand is doctor's child: it runs the check's sgemm on the core
// its environment's OPENBLAS_CORETYPE made OpenBLAS load, and writes its
// times and result for the parent to judge. Hidden: nothing else runs it.
func blasCheckCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:   "blas-check",
		Usage:  "distillvq doctor's child process: time one sgemm on the core OpenBLAS loaded",
		Hidden: true,
		Action: func(ctx context.Context, c *ucli.Command) error {
			if os.Getenv(blasCheckEnv) == "" {
				return fmt.Errorf("blas-check runs only as distillvq doctor's child process")
			}
			defer faiss.SerialBLAS()()
			// The product then runs on this goroutine's thread alone, so
			// that thread's CPU time is the kernel's time, whatever else
			// the machine runs: wall time on a busy machine varied by a
			// third from run to run, and ranked Haswell and Zen at random.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpuTime := func() time.Duration {
				var ts unix.Timespec
				if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
					return 0
				}
				return time.Duration(ts.Nano())
			}
			info := faiss.OpenBLAS()
			a, b := sgemmInputs()
			prod := make([]float32, checkM*checkN)
			h := blasCheckHeader{Core: info.Core, Threads: info.Threads}
			faiss.Sgemm(false, false, checkM, checkN, checkK, 1, a, checkK, b, checkN, 0, prod, checkN)
			for start := time.Now(); len(h.Seconds) < checkReps || time.Since(start) < checkTime && len(h.Seconds) < 100; {
				wall, t := time.Now(), cpuTime()
				faiss.Sgemm(false, false, checkM, checkN, checkK, 1, a, checkK, b, checkN, 0, prod, checkN)
				d := cpuTime() - t
				if d <= 0 {
					d = time.Since(wall)
				}
				h.Seconds = append(h.Seconds, d.Seconds())
			}
			js, err := json.Marshal(h)
			if err != nil {
				return fail(err)
			}
			w := bufio.NewWriter(e.stdout)
			w.Write(append(js, '\n'))
			binary.Write(w, binary.LittleEndian, prod)
			return fail(w.Flush())
		},
	}
}

// CoreCheck is doctor's measure of one OpenBLAS core type.
type CoreCheck struct {
	// Name is the OPENBLAS_CORETYPE value.
	Name  string `json:"name"`
	Level string `json:"level"`
	// Needs are the CPU features its kernels execute; Missing, those this
	// CPU lacks, which leave it untried (it would die of SIGILL).
	Needs   []string `json:"needs"`
	Missing []string `json:"missing,omitempty"`
	Tried   bool     `json:"tried"`
	// Runs is the core OpenBLAS reported when asked for Name: another
	// name when this OpenBLAS maps Name to other kernels.
	Runs    string  `json:"runs,omitempty"`
	Threads int     `json:"threads,omitempty"`
	Seconds float64 `json:"seconds,omitempty"` // best CPU time of the timed runs
	Timed   int     `json:"timed_runs,omitempty"`
	GFlops  float64 `json:"gflops,omitempty"`
	// MaxError is max |ĉ - c| against the float64 product; ErrorRatio is
	// the largest of |ĉ - c| / (γ_k (|A||B|)), each entry's error over its
	// bound. Correct says every entry is finite and within its bound
	// (ErrorRatio <= 1).
	MaxError   float64 `json:"max_abs_error,omitempty"`
	ErrorRatio float64 `json:"error_ratio,omitempty"`
	Correct    bool    `json:"correct"`
	// Error says why a tried core gave no result (the child crashed).
	Error string `json:"error,omitempty"`
}

// DoctorReport is what doctor prints, and writes with --json.
type DoctorReport struct {
	BLAS  faiss.BLASInfo  `json:"blas"`
	FAISS faiss.FAISSInfo `json:"faiss"`
	// CoreType is OPENBLAS_CORETYPE as this process saw it, empty if unset.
	CoreType string `json:"openblas_coretype,omitempty"`
	CPU      struct {
		Model    string   `json:"model,omitempty"`
		CPUs     int      `json:"cpus"`
		Features []string `json:"features"`
		// Level is the best kernel level this CPU runs.
		Level string `json:"level,omitempty"`
	} `json:"cpu"`
	// Check is the sgemm every core type runs: C = A B, A m×k, B k×n.
	Check struct {
		M int `json:"m"`
		K int `json:"k"`
		N int `json:"n"`
		// Each core's time is its best of at least MinReps runs and MinSeconds.
		MinReps    int     `json:"min_reps"`
		MinSeconds float64 `json:"min_seconds"`
		// GammaK is γ_k: entry ij is correct within GammaK (|A||B|)_ij.
		GammaK float64 `json:"gamma_k"`
	} `json:"check"`
	Cores []CoreCheck `json:"cores"`
	// Recommended is the core type to set, empty when none gave correct
	// results; Set says OpenBLAS does not run it already.
	Recommended string `json:"recommended,omitempty"`
	Set         bool   `json:"set"`
	// Advice is the recommendation as doctor prints it.
	Advice string `json:"advice"`
}

func doctorCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "doctor",
		Usage:     "describe the BLAS, FAISS and CPU this distillvq runs on, time OpenBLAS's kernels for this CPU and recommend the fastest correct one",
		UsageText: "distillvq doctor [--json out.json|-]",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "json", Usage: "also write the report as JSON (-: on standard output, instead of the text)"},
		},
		Action: func(ctx context.Context, c *ucli.Command) error {
			js := c.String("json")
			if js != "" && js != "-" {
				if err := checkOutputDir(js); err != nil {
					return fail(err)
				}
			}
			r, err := doctor(ctx)
			if err != nil {
				return fail(err)
			}
			if js == "-" {
				b, err := json.MarshalIndent(r, "", "  ")
				if err != nil {
					return fail(err)
				}
				e.stdout.Write(append(b, '\n'))
			} else {
				printDoctor(e.stdout, r)
			}
			if js != "" && js != "-" {
				if err := writeJSON(js, r); err != nil {
					return fail(err)
				}
			}
			if r.Recommended == "" && len(r.Cores) > 0 {
				return failf("no OpenBLAS core type gave correct sgemm results on this CPU")
			}
			return nil
		},
	}
}

// doctor gathers the report, running one child process per core type tried.
func doctor(ctx context.Context) (*DoctorReport, error) {
	r := &DoctorReport{BLAS: faiss.OpenBLAS(), FAISS: faiss.FAISS(), CoreType: os.Getenv(coreEnv), Cores: []CoreCheck{}}
	r.CPU.Model, r.CPU.CPUs = cpuInfo().model, runtime.NumCPU()
	for _, f := range cpuFeatures {
		if *f.has {
			r.CPU.Features = append(r.CPU.Features, f.name)
		}
	}
	if l := cpuLevel(); l >= 0 {
		r.CPU.Level = levelNames[l]
	}
	r.Check.M, r.Check.K, r.Check.N = checkM, checkK, checkN
	r.Check.MinReps, r.Check.MinSeconds = checkReps, checkTime.Seconds()
	if r.BLAS.Core == "" {
		r.Advice = "no OpenBLAS in this build: nothing to choose"
		return r, nil
	}
	if os.Getenv(blasCheckEnv) != "" {
		return nil, fmt.Errorf("doctor refuses to run inside its own check (%s is set)", blasCheckEnv)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("doctor re-runs itself to try each core type: %w", err)
	}
	a, b := sgemmInputs()
	ref, scale := reference(a, b)
	r.Check.GammaK = gammaK

	// The cores to try: each this CPU runs, or only the loaded one when
	// OPENBLAS_CORETYPE cannot change it; and the loaded one when it is none
	// of those, so that the report compares against what runs now.
	var names []string
	for _, c := range coreTypes {
		if c.try && r.BLAS.DynamicArch {
			names = append(names, c.name)
		}
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, r.BLAS.Core) }) {
		names = append(names, r.BLAS.Core)
	}
	for _, name := range names {
		cc := CoreCheck{Name: name}
		if c, ok := findCore(name); ok {
			cc.Level, cc.Needs, cc.Missing = levelNames[c.level], c.needs, c.missing()
		}
		if len(cc.Missing) == 0 {
			cc.Tried = true
			asIs := !r.BLAS.DynamicArch && name == r.BLAS.Core
			runCheck(ctx, exe, &cc, asIs, ref, scale)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.Cores = append(r.Cores, cc)
	}
	recommend(r)
	return r, nil
}

// runCheck runs one blas-check child on core type cc.Name (or, with asIs,
// the environment unchanged) and fills cc with its speed and accuracy.
func runCheck(ctx context.Context, exe string, cc *CoreCheck, asIs bool, ref, scale []float64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "blas-check")
	for _, kv := range os.Environ() {
		if asIs || !strings.HasPrefix(kv, coreEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, blasCheckEnv+"=1")
	if !asIs {
		cmd.Env = append(cmd.Env, coreEnv+"="+cc.Name)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		if last := lastLine(stderr.String()); last != "" {
			msg += ": " + last
		}
		cc.Error = msg
		return
	}
	line, rest, _ := bytes.Cut(out, []byte{'\n'})
	var h blasCheckHeader
	if err := json.Unmarshal(line, &h); err != nil || len(h.Seconds) == 0 || len(rest) != 4*len(ref) {
		cc.Error = fmt.Sprintf("unreadable result (%d bytes)", len(out))
		return
	}
	cc.Runs, cc.Threads, cc.Seconds, cc.Timed = h.Core, h.Threads, slices.Min(h.Seconds), len(h.Seconds)
	cc.GFlops = 2 * checkM * checkN * checkK / cc.Seconds / 1e9
	for i, want := range ref {
		got := float64(math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:])))
		d := math.Abs(got - want)
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		cc.MaxError = max(cc.MaxError, d)
		if d > 0 {
			cc.ErrorRatio = max(cc.ErrorRatio, d/(gammaK*scale[i]))
		}
	}
	cc.Correct = !math.IsInf(cc.MaxError, 0) && cc.ErrorRatio <= 1
}

// lastLine is the last non-blank line of s, trimmed.
func lastLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// recommend picks the fastest correct core type among those of the highest
// level that gave correct results, keeping the loaded one unless another
// measured sameSpeed times faster. Older levels are measured but never
// recommended over a correct newer one: one shape's speed is not every
// shape's, and the computing commands warn whenever an older level runs, so
// a recommendation below the CPU's level would be warned against.
func recommend(r *DoctorReport) {
	level := func(c *CoreCheck) int {
		ct, _ := findCore(c.Runs)
		return ct.level
	}
	var best, loaded *CoreCheck
	for i := range r.Cores {
		c := &r.Cores[i]
		if !c.Correct {
			continue
		}
		if strings.EqualFold(c.Runs, r.BLAS.Core) && (loaded == nil || c.GFlops > loaded.GFlops) {
			loaded = c
		}
		if best == nil || level(c) > level(best) || level(c) == level(best) && c.GFlops > best.GFlops {
			best = c
		}
	}
	if best == nil {
		r.Advice = "no core type gave correct results: OpenBLAS cannot be trusted on this CPU"
		return
	}
	if loaded != nil && level(loaded) == level(best) && best.GFlops < sameSpeed*loaded.GFlops {
		best = loaded
	}
	r.Recommended = best.Name
	r.Set = !strings.EqualFold(best.Runs, r.BLAS.Core)
	switch {
	case !r.Set:
		r.Advice = fmt.Sprintf("%s: OpenBLAS already runs it, nothing to set", r.BLAS.Core)
		if !strings.EqualFold(best.Name, r.BLAS.Core) {
			r.Advice = fmt.Sprintf("%s (its %s kernels): OpenBLAS already runs them, nothing to set", best.Name, best.Runs)
		}
	case !r.BLAS.DynamicArch:
		r.Advice = fmt.Sprintf("%s cannot change this OpenBLAS's kernels (no DYNAMIC_ARCH); install a DYNAMIC_ARCH build (Debian's libopenblas0-pthread)", coreEnv)
	default:
		speedup := ""
		if loaded != nil && loaded.GFlops > 0 {
			speedup = fmt.Sprintf(", %.1fx the speed of %s, which runs now", best.GFlops/loaded.GFlops, r.BLAS.Core)
		}
		r.Advice = fmt.Sprintf("%s=%s%s; set it in the environment of every distillvq command, e.g. `export %s=%s` in your shell profile",
			coreEnv, best.Name, speedup, coreEnv, best.Name)
	}
}

// printDoctor writes the report as text.
func printDoctor(w io.Writer, r *DoctorReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	b := r.BLAS
	lib := b.Library
	if b.Version != "" {
		lib += " " + b.Version
	}
	if b.Path != "" {
		lib += ", " + b.Path
	}
	fmt.Fprintf(tw, "BLAS\t%s\n", lib)
	if b.Config != "" {
		fmt.Fprintf(tw, "\tconfig: %s\n", b.Config)
	}
	if b.Core != "" {
		how := "chosen by OpenBLAS for this CPU model"
		if r.CoreType != "" {
			how = coreEnv + "=" + r.CoreType
		}
		fmt.Fprintf(tw, "\tcore: %s (%s), %d threads\n", b.Core, how, b.Threads)
	}
	faissLine := "none (built without cgo)"
	if r.FAISS.Version != "" {
		faissLine = r.FAISS.Version
		if r.FAISS.CompileOptions != "" {
			faissLine += " (" + r.FAISS.CompileOptions + ")"
		}
	}
	fmt.Fprintf(tw, "FAISS\t%s\n", faissLine)
	model := r.CPU.Model
	if model == "" {
		model = runtime.GOARCH
	}
	fmt.Fprintf(tw, "CPU\t%s, %d logical CPUs\n", model, r.CPU.CPUs)
	if r.CPU.Level != "" {
		fmt.Fprintf(tw, "\tfeatures: %s (best kernels: %s)\n", strings.Join(r.CPU.Features, " "), r.CPU.Level)
	}
	tw.Flush()
	if len(r.Cores) > 0 {
		fmt.Fprintf(w, "\nsgemm %dx%d by %dx%d in float32 on one thread, best CPU time of >= %d runs and %g s, against the float64 product; "+
			"correct means each entry within float32 rounding, gamma_k*(|A||B|)_ij with gamma_k = ku/(1-ku) = %.3g (u = 2^-24)\n",
			r.Check.M, r.Check.K, r.Check.K, r.Check.N, r.Check.MinReps, r.Check.MinSeconds, r.Check.GammaK)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "core type\tlevel\truns\tGFlops\tmax error\terror/bound\tcorrect")
		for _, c := range r.Cores {
			switch {
			case !c.Tried:
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tnot tried: the CPU lacks %s\n", c.Name, c.Level, strings.Join(c.Missing, " "))
			case c.Error != "":
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tfailed: %s\n", c.Name, c.Level, c.Error)
			default:
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%.2g\t%.3f\t%s\n", c.Name, c.Level, c.Runs, c.GFlops, c.MaxError, c.ErrorRatio,
					map[bool]string{true: "yes", false: "NO"}[c.Correct])
			}
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nrecommended: %s\n", r.Advice)
}
