package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/faissio"
	"github.com/distillvq/distillvq/internal/testutil"
)

// writeShards cuts the documents at docs into four .npy shards of unequal
// sizes in dir and returns their paths and first rows.
func writeShards(t *testing.T, docs, dir string) ([]string, []int) {
	t.Helper()
	m, err := faissio.ReadVectors(docs)
	if err != nil {
		t.Fatal(err)
	}
	// Shards that start at multiples of build.ShardAlign are encoded in
	// the very blocks build encodes them in; siftsmall's 10,000 rows have
	// room for three such, so its four start elsewhere, which gives build's
	// bytes too unless a document lies at a tie of two lists.
	cuts := []int{0, m.Rows / 10, m.Rows/10 + m.Rows/3, m.Rows - m.Rows/7, m.Rows}
	if m.Rows > 4*build.ShardAlign {
		cuts = []int{0, build.ShardAlign, 3 * build.ShardAlign, 4 * build.ShardAlign, m.Rows}
	}
	var paths []string
	for s := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("shard-%d.npy", s))
		if err := faissio.WriteNpy(p, m.Slice(cuts[s], cuts[s+1])); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths, cuts
}

// TestTrainAddMergeEqualsBuild runs the distributed build's steps by hand on
// the embedded set and on siftsmall, cut into four shards of unequal sizes:
// train once, add each shard, merge the parts. The merged file must be
// byte-identical to build's of the whole set and to Python FAISS's
// merge_into of the same parts, and Python FAISS must search it memory-mapped
// as in memory. Adding the last shards to the filled index of the first
// ones gives build's file too.
func TestTrainAddMergeEqualsBuild(t *testing.T) {
	type set struct{ name, docs string }
	sets := []set{{"glove20k", gloveDocs}}
	if haveSift() {
		sets = append(sets, set{"siftsmall", siftDir + "/siftsmall_base.fvecs"})
	} else {
		t.Log("siftsmall (outside the repository) not found: the embedded set only")
	}
	for _, ds := range sets {
		dir := t.TempDir()
		shards, cuts := writeShards(t, ds.docs, dir)
		m, mfs := "20", "50" // PQ sub-quantizers: 5 dimensions each; FastScan's: 2
		if ds.name == "siftsmall" {
			m, mfs = "16", "32"
		}
		for _, c := range []struct {
			name string
			args []string
			// FAISS 1.7.3's merge_into cannot merge FastScan's block lists
			// (BlockInvertedLists adds a list's entries only once).
			noPython bool
		}{
			{"kmeans-ivfpqfs-hnsw", []string{"--train", "kmeans", "--index", "ivfpqfs", "--m", mfs, "--quantizer", "hnsw"}, true},
			{"kmeans-ivfpq", []string{"--train", "kmeans", "--m", m}, false},
			{"kmeans-ivfflat", []string{"--train", "kmeans", "--index", "ivfflat", "--metric", "l2"}, false},
			{"distill-ivfpq", []string{"--m", m, "--pseudo-queries", "300", "--epochs", "1"}, false},
		} {
			// siftsmall's shards start off build's encoding blocks (see
			// writeShards), the one path the embedded set's aligned shards
			// do not take; the trainers and kinds are the same code on
			// either set, so siftsmall runs one case of them.
			if ds.name == "siftsmall" && c.name != "kmeans-ivfpq" {
				continue
			}
			t.Run(ds.name+"/"+c.name, func(t *testing.T) {
				args := c.args
				common := append([]string{"--nlist", "64", "--seed", "3"}, args...)
				if ds.name == "glove20k" {
					// Byte equality of two paths: a small sample and few
					// k-means iterations are enough. Not on siftsmall:
					// its shards start off the encoding blocks, where a
					// document at a tie of two lists may take the other
					// one, and this training puts one there.
					common = append(common, "--train-size", "6000", "--niter", "10")
				}
				whole := filepath.Join(dir, c.name+"-whole.faiss")
				mustRun(t, append([]string{"build", "--docs", ds.docs, "-o", whole}, common...)...)
				trained := filepath.Join(dir, c.name+"-trained.faiss")
				mustRun(t, append([]string{"train", "--docs", ds.docs, "-o", trained}, common...)...)
				var parts []string
				for s, shard := range shards {
					part := filepath.Join(dir, fmt.Sprintf("%s-part-%d.faiss", c.name, s))
					mustRun(t, "add", "--index", trained, "--docs", shard, "--first-id", fmt.Sprint(cuts[s]), "-o", part)
					parts = append(parts, part)
				}
				merged := filepath.Join(dir, c.name+"-merged.faiss")
				mustRun(t, append([]string{"merge", "-o", merged}, parts...)...)
				want, got := readBytes(t, whole), readBytes(t, merged)
				if !bytes.Equal(got, want) {
					t.Errorf("train + add + merge differs from build (%d and %d bytes)", len(got), len(want))
				}
				// Python FAISS's merge_into of the same parts, and a
				// memory-mapped search of ours.
				if !c.noPython {
					py := filepath.Join(dir, c.name+"-python.faiss")
					out := testutil.RunPython(t, pyMergeAndMmap, py, merged, gloveQueriesFor(ds.name), strings.Join(parts, ","))
					if !bytes.Equal(readBytes(t, py), want) {
						t.Errorf("Python FAISS's merge_into of the parts differs from build's file")
					}
					if strings.TrimSpace(string(out)) != "mmap search equal" {
						t.Errorf("memory-mapped search: %s", out)
					}
				}
				// Add to a filled index: the first two shards, then the rest.
				half := filepath.Join(dir, c.name+"-half.faiss")
				mustRun(t, "merge", "-o", half, parts[0], parts[1])
				full := filepath.Join(dir, c.name+"-full.faiss")
				rest := filepath.Join(dir, c.name+"-rest.npy")
				restRows, err := faissio.ReadVectors(shards[2])
				if err != nil {
					t.Fatal(err)
				}
				last, err := faissio.ReadVectors(shards[3])
				if err != nil {
					t.Fatal(err)
				}
				restRows.Data = append(restRows.Data, last.Data...)
				restRows.Rows += last.Rows
				if err := faissio.WriteNpy(rest, restRows); err != nil {
					t.Fatal(err)
				}
				_, errs := runOK(t, "add", "--index", half, "--trained", trained, "--docs", rest, "-o", full)
				if errs != "" {
					t.Errorf("add to a filled index with --trained: %s", errs)
				}
				if !bytes.Equal(readBytes(t, full), want) {
					t.Errorf("adding to the filled index differs from build")
				}
			})
		}
	}
}

// gloveQueriesFor names the queries of a data set.
func gloveQueriesFor(name string) string {
	if name == "siftsmall" {
		return siftDir + "/siftsmall_query.fvecs"
	}
	return gloveQ
}

// pyMergeAndMmap merges the parts (argv[4], comma-separated) with
// faiss.merge_into into argv[1], then searches argv[2] with the queries
// argv[3] in memory and memory-mapped and says whether they agree.
const pyMergeAndMmap = `
import sys, faiss, numpy as np
out, merged, qpath, parts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
ix = faiss.read_index(parts[0])
for p in parts[1:]:
    faiss.merge_into(ix, faiss.read_index(p), False)
faiss.write_index(ix, out)
if qpath.endswith(".fvecs"):
    a = np.fromfile(qpath, dtype="int32"); q = a.reshape(-1, a[0] + 1)[:, 1:].view("float32").copy()
else:
    q = np.load(qpath).astype(np.float32)
mem = faiss.read_index(merged)
mm = faiss.read_index(merged, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
for index in (mem, mm):
    faiss.extract_index_ivf(index).nprobe = 8
D1, I1 = mem.search(q, 10)
D2, I2 = mm.search(q, 10)
print("mmap search equal" if (I1 == I2).all() and (D1 == D2).all() else "mmap search differs")
`

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMergeAndAddRefuse checks the steps' refusals, each one line and no
// output: a part of another training, a truncated part, ids in two parts,
// an id already in the index, documents of another dimension, --first-id
// with --ids.
func TestMergeAndAddRefuse(t *testing.T) {
	dir := t.TempDir()
	shards, cuts := writeShards(t, gloveDocs, dir)
	trainArgs := []string{"train", "--docs", gloveDocs, "--train", "kmeans", "--nlist", "16", "--m", "10"}
	trained, other := filepath.Join(dir, "trained.faiss"), filepath.Join(dir, "other.faiss")
	mustRun(t, append(trainArgs, "-o", trained)...)
	mustRun(t, append(trainArgs, "--seed", "99", "-o", other)...)
	part := func(name, index string, shard int, extra ...string) string {
		out := filepath.Join(dir, name)
		mustRun(t, append([]string{"add", "--index", index, "--docs", shards[shard], "--first-id", fmt.Sprint(cuts[shard]), "-o", out}, extra...)...)
		return out
	}
	p0, p1 := part("p0.faiss", trained, 0), part("p1.faiss", trained, 1)
	alien := part("alien.faiss", other, 2)
	dup := filepath.Join(dir, "dup.faiss")
	mustRun(t, "add", "--index", trained, "--docs", shards[2], "--first-id", "5", "-o", dup)
	cut := filepath.Join(dir, "cut.faiss")
	b := readBytes(t, p1)
	if err := os.WriteFile(cut, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	q3 := filepath.Join(dir, "q3.npy")
	if err := faissio.WriteNpy(q3, faissio.Matrix{Rows: 2, Cols: 3, Data: make([]float32, 6)}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.faiss")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"merge", "-o", out, p0, alien}, 1, "alien.faiss was trained differently from "},
		{[]string{"merge", "-o", out, p0, cut}, 1, "cut.faiss"},
		{[]string{"merge", "-o", out, p0, dup}, 1, "p0.faiss and " + dup},
		{[]string{"merge", "-o", out}, 2, "merge"},
		{[]string{"add", "--index", p0, "--docs", shards[0], "--first-id", "0", "-o", out}, 1, "is already in the index"},
		{[]string{"add", "--index", trained, "--docs", q3, "-o", out}, 1, "d=3"},
		{[]string{"add", "--index", trained, "--docs", shards[0], "--first-id", "0", "--ids", q3, "-o", out}, 2, "give one"},
		{[]string{"add", "--index", p0, "--trained", other, "--docs", shards[1], "-o", out}, 1, "trained differently"},
	} {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want exit %d and one line with %q", c.args[:1], code, errs, c.code, c.want)
		}
		// The duplicate named must be one of the ids both parts hold.
		if c.args[len(c.args)-1] == dup {
			var id int
			if _, err := fmt.Sscanf(errs, "distillvq: merge: id %d is in both", &id); err != nil || id < 5 || id >= cuts[1] {
				t.Errorf("merge names id %d (%v), not one in [5, %d): %q", id, err, cuts[1], errs)
			}
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused step wrote its output")
	}
}

// TestFlatKindsRefuseSteps checks that the kinds without IVF, which have no
// lists to fill shard by shard, are refused by the steps and by options
// that need lists, in one line each.
func TestFlatKindsRefuseSteps(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "pq.faiss")
	mustRun(t, "build", "--docs", gloveDocs, "--index", "pq", "--m", "10", "--train", "kmeans", "-o", pq)
	out := filepath.Join(dir, "out.faiss")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--docs", gloveDocs, "--index", "pq", "-o", out}, 1, "no inverted lists to fill shard by shard"},
		{[]string{"add", "--index", pq, "--docs", gloveDocs, "-o", out}, 1, "IndexPQ is not an IndexIVFFlat"},
		{[]string{"merge", "-o", out, pq, pq}, 1, "IndexPQ has no inverted lists"},
		{[]string{"build", "--docs", gloveDocs, "--index", "pqfs", "--nbits", "8", "-o", out}, 2, "codes are 4 bits"},
		{[]string{"build", "--docs", gloveDocs, "--index", "pq", "--quantizer", "hnsw", "-o", out}, 2, "needs an IVF index"},
		{[]string{"build", "--docs", gloveDocs, "--index", "pq", "--nlist", "64", "-o", out}, 2, "has no inverted lists"},
		{[]string{"build", "--docs", gloveDocs, "--index", "ivfpq", "--quantizer", "hnsw", "--hnsw-m", "1", "-o", out}, 2, "--hnsw-m 1"},
		{[]string{"build", "--docs", gloveDocs, "--opq-niter", "5", "-o", out}, 2, "--opq-niter is for the OPQ rotation: it needs --opq"},
		{[]string{"build", "--docs", gloveDocs, "--opq", "--opq-niter", "-2", "-o", out}, 2, "--opq-niter -2 must be at least 1"},
	} {
		code, _, errs := run(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want exit %d and one line with %q", c.args, code, errs, c.code, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused command wrote its output")
	}
}
