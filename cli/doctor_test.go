package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	faiss "github.com/distillvq/distillvq/cgo"
)

// runWithCore runs the distillvq binary with OPENBLAS_CORETYPE set to core
// in its environment (unset when core is ""), and returns its exit code,
// standard output and standard error.
func runWithCore(t *testing.T, core string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(distillvqBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, coreEnv+"=") && !strings.HasPrefix(kv, quietBLASEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if core != "" {
		cmd.Env = append(cmd.Env, coreEnv+"="+core)
	}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// warnings are the lines of stderr that warn of slow BLAS kernels.
func warnings(stderr string) []string {
	var w []string
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, "distillvq: warning:") && strings.Contains(l, coreEnv) {
			w = append(w, strings.TrimSpace(l))
		}
	}
	return w
}

// doctorReport runs doctor --json and returns its report, failing unless
// doctor exits 0 and prints a recommendation.
func doctorReport(t *testing.T) DoctorReport {
	t.Helper()
	js := filepath.Join(t.TempDir(), "doctor.json")
	code, out, errs := runWithCore(t, "", "doctor", "--json", js)
	if code != 0 {
		t.Fatalf("doctor: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "\nrecommended: ") {
		t.Fatalf("doctor printed no recommendation:\n%s", out)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var r DoctorReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("doctor --json does not parse: %v", err)
	}
	return r
}

// TestDoctor runs doctor and checks its report: it parses, as a file and on
// standard output, names the BLAS and FAISS linked, never tries a core type
// the CPU cannot run, and recommends a core type whose sgemm it found
// correct; and the same core type, set in a process of its own, gives
// products within float32 rounding of float64 ones (TestDoctorSgemmHelper).
func TestDoctor(t *testing.T) {
	r := doctorReport(t)
	if r.BLAS.Library != "OpenBLAS" || r.BLAS.Version == "" || r.BLAS.Core == "" || r.BLAS.Threads < 1 {
		t.Errorf("BLAS %+v: want OpenBLAS with its version, core and threads", r.BLAS)
	}
	if r.FAISS.Version == "" {
		t.Errorf("no FAISS version")
	}
	if len(r.CPU.Features) == 0 || r.CPU.CPUs < 1 {
		t.Errorf("CPU %+v: want its features", r.CPU)
	}
	var rec *CoreCheck
	tried := 0
	for i, c := range r.Cores {
		if c.Tried {
			tried++
			if len(c.Missing) > 0 {
				t.Errorf("%s tried though the CPU lacks %v", c.Name, c.Missing)
			}
		}
		if c.Name == r.Recommended {
			rec = &r.Cores[i]
		}
	}
	if tried == 0 || rec == nil {
		t.Fatalf("tried %d core types, recommended %q: want at least one, and the recommendation among them", tried, r.Recommended)
	}
	if !rec.Correct || rec.ErrorRatio > 1 || rec.GFlops <= 0 || rec.Runs == "" {
		t.Errorf("recommended %s: %+v, want a correct, timed result", rec.Name, *rec)
	}
	if r.Set != !strings.EqualFold(rec.Runs, r.BLAS.Core) || !strings.Contains(r.Advice, coreEnv) && r.Set {
		t.Errorf("set %v, advice %q, for %s recommended while %s runs", r.Set, r.Advice, rec.Name, r.BLAS.Core)
	}

	code, out, errs := runWithCore(t, "", "doctor", "--json", "-")
	var again DoctorReport
	if err := json.Unmarshal([]byte(out), &again); code != 0 || err != nil {
		t.Errorf("doctor --json -: exit %d, %v: %s", code, err, errs)
	}

	// The recommendation checked again, without doctor's own code: this test
	// binary, started with the core type set, multiplies other matrices and
	// compares them with a float64 product.
	cmd := exec.Command(os.Args[0], "-test.run=^TestDoctorSgemmHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), coreEnv+"="+r.Recommended, "DISTILLVQ_SGEMM_HELPER=1")
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "core "+rec.Runs) {
		t.Errorf("sgemm on %s in a child: %v\n%s", r.Recommended, err, b)
	}
}

// TestDoctorSgemmHelper is TestDoctor's child: with OPENBLAS_CORETYPE set
// in its environment it checks OpenBLAS's sgemm, on this core type, against
// a float64 product computed by plain loops, with the bound doctor uses:
// |ĉ - c| <= γ_k Σ|a||b| for every entry.
func TestDoctorSgemmHelper(t *testing.T) {
	if os.Getenv("DISTILLVQ_SGEMM_HELPER") == "" {
		t.Skip("TestDoctor's child process")
	}
	const m, k, n = 97, 300, 131
	gamma := k * 0x1p-24 / (1 - k*0x1p-24)
	r := rand.New(rand.NewPCG(7, 7))
	a, b := make([]float32, m*k), make([]float32, k*n)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = float32(r.NormFloat64())
	}
	c := make([]float32, m*n)
	faiss.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	worst := 0.0
	for i := range m {
		for j := range n {
			var exact, scale float64
			for l := range k {
				p := float64(a[i*k+l]) * float64(b[l*n+j])
				exact += p
				scale += math.Abs(p)
			}
			ratio := math.Abs(float64(c[i*n+j])-exact) / (gamma * scale)
			if !(ratio <= 1) {
				t.Fatalf("C[%d,%d] = %g, float64 %g: error %g of the bound", i, j, c[i*n+j], exact, ratio)
			}
			worst = max(worst, ratio)
		}
	}
	t.Logf("core %s: worst error %.4f of the bound", faiss.OpenBLAS().Core, worst)
}

// TestSlowBLASWarning forces OpenBLAS's Prescott (SSE3) kernels through a
// child's environment: a computing command then warns in one line that
// names OPENBLAS_CORETYPE, while inspect, doctor's siblings and --help do
// not; with doctor's recommended core type set, build warns no more.
func TestSlowBLASWarning(t *testing.T) {
	if best, ok := bestCore(); !ok || best.level <= 1 {
		t.Skip("this CPU runs no kernels newer than Prescott's")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "x.faiss")
	buildArgs := []string{"build", "--docs", gloveDocs, "--train", "kmeans", "--index", "ivfflat", "--nlist", "16", "-o", out}

	code, _, errs := runWithCore(t, "Prescott", buildArgs...)
	w := warnings(errs)
	if code != 0 || len(w) != 1 || !strings.Contains(w[0], "Prescott") || !strings.Contains(w[0], coreEnv+"=") {
		t.Fatalf("build with Prescott: exit %d, warnings %q; want one line naming Prescott and %s=\n%s", code, w, coreEnv, errs)
	}
	if !strings.HasPrefix(errs, "distillvq: warning:") {
		t.Errorf("the warning is not the first line, at start-up:\n%s", errs)
	}
	for _, args := range [][]string{{"inspect", out}, {"build", "--help"}, {"--help"}} {
		if code, _, errs := runWithCore(t, "Prescott", args...); code != 0 || len(warnings(errs)) != 0 {
			t.Errorf("%v with Prescott: exit %d, stderr %q; want no warning", args, code, errs)
		}
	}
	// search fails on a missing index, but warns first: the check runs
	// before the command's own.
	if _, _, errs := runWithCore(t, "Prescott", "search", "--index", filepath.Join(dir, "none.faiss"), "--queries", gloveQ); len(warnings(errs)) != 1 {
		t.Errorf("search with Prescott: stderr %q, want the warning", errs)
	}

	r := doctorReport(t)
	code, _, errs = runWithCore(t, r.Recommended, buildArgs...)
	if code != 0 || len(warnings(errs)) != 0 || strings.Contains(errs, "warning") {
		t.Errorf("build with %s=%s (doctor's recommendation): exit %d, stderr %q; want no warning", coreEnv, r.Recommended, code, errs)
	}
}

// TestSlowBLASMessage checks the warning's judgement on this CPU for cores
// described rather than loaded: none for the best core type or a core it
// does not know, and the build's limits said when OPENBLAS_CORETYPE cannot
// help.
func TestSlowBLASMessage(t *testing.T) {
	best, ok := bestCore()
	if !ok {
		t.Skip("not an x86-64 CPU: no core types to judge")
	}
	for _, core := range []string{best.name, strings.ToUpper(best.name), "ARMV8", ""} {
		if msg := slowBLAS(faiss.BLASInfo{Core: core, DynamicArch: true}); msg != "" {
			t.Errorf("core %q: %q, want no warning", core, msg)
		}
	}
	if best.level <= 1 {
		return
	}
	msg := slowBLAS(faiss.BLASInfo{Core: "Prescott", DynamicArch: true})
	if !strings.Contains(msg, coreEnv+"="+best.name) || strings.Contains(msg, "\n") {
		t.Errorf("Prescott: %q, want one line suggesting %s=%s", msg, coreEnv, best.name)
	}
	if msg := slowBLAS(faiss.BLASInfo{Core: "Prescott"}); !strings.Contains(msg, "DYNAMIC_ARCH") || !strings.Contains(msg, coreEnv) {
		t.Errorf("Prescott without DYNAMIC_ARCH: %q, want the build named as the limit", msg)
	}
}

// TestDoctorJudgesChildren feeds runCheck stand-in children: one killed by
// SIGILL, as a core type needing instructions the CPU lacks would be, is
// reported as such, not fatal; one returning zeros is timed but not correct.
func TestDoctorJudgesChildren(t *testing.T) {
	dir := t.TempDir()
	a, b := sgemmInputs()
	ref, scale := reference(a, b)
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cc := CoreCheck{Name: "SkylakeX"}
	runCheck(t.Context(), script("sigill", "kill -ILL $$"), &cc, false, ref, scale)
	if cc.Correct || !strings.Contains(cc.Error, "illegal instruction") {
		t.Errorf("SIGILL child: %+v, want its signal as the error", cc)
	}
	cc = CoreCheck{Name: "Zen"}
	zeros := fmt.Sprintf(`printf '{"core":"Zen","threads":1,"seconds":[0.01]}\n'; head -c %d /dev/zero`, 4*len(ref))
	runCheck(t.Context(), script("zeros", zeros), &cc, false, ref, scale)
	if cc.Error != "" || cc.Correct || cc.ErrorRatio <= 1 || cc.GFlops <= 0 {
		t.Errorf("zeros child: %+v, want a timed, incorrect result", cc)
	}
}

// TestBenchMachineWarns checks make bench's machine table: Python FAISS's
// OpenBLAS reported on Prescott kernels gets the warning, with the variable
// to set; on the CPU's best kernels it gets none.
func TestBenchMachineWarns(t *testing.T) {
	best, ok := bestCore()
	if !ok || best.level <= 1 {
		t.Skip("this CPU runs no kernels newer than Prescott's")
	}
	table := func(core string) string {
		py := fmt.Sprintf(`{"openblas": {"config": "OpenBLAS 0.3.21 DYNAMIC_ARCH %s", "core": %q, "library": "libopenblas.so.0"}}`, core, core)
		var md strings.Builder
		writeMachine(&md, benchMachine{PythonFAISS: json.RawMessage(py)})
		return md.String()
	}
	if md := table("Prescott"); !strings.Contains(md, "Python FAISS: OpenBLAS runs its Prescott kernels") || !strings.Contains(md, coreEnv+"="+best.name) {
		t.Errorf("Prescott in Python FAISS, no warning in the table:\n%s", md)
	}
	if md := table(best.name); strings.Contains(md, "Python FAISS:") {
		t.Errorf("%s in Python FAISS, warned:\n%s", best.name, md)
	}
}
