package faissio

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distillvq/distillvq/internal/testutil"
)

// pyMerge runs the merge jobs of the file argv[1], one a line: a method
// (merge_from: index.merge_from(other, 0); merge_into:
// faiss.merge_into(index, other, False), which also handles an
// IndexPreTransform), the output path, and the parts in order.
const pyMerge = `
import sys, faiss
for line in open(sys.argv[1]):
    method, out, *parts = line.split()
    a = faiss.read_index(parts[0])
    for p in parts[1:]:
        b = faiss.read_index(p)
        if method == 'merge_from':
            a.merge_from(b, 0)
        else:
            faiss.merge_into(a, b, False)
    faiss.write_index(a, out)
`

// TestMergeMatchesPythonFAISS: parts written by faissio and merged by
// Python FAISS, in order, give the bytes Merge writes, for 16 random
// shapes (IVFFlat and IVFPQ, rotation or not, full and sparse lists, 1 to
// 5 parts, some empty).
func TestMergeMatchesPythonFAISS(t *testing.T) {
	testutil.Python(t)
	ctx := context.Background()
	r := ixRand(41)
	dir := t.TempDir()
	var jobs strings.Builder
	type job struct{ name, ours, theirs string }
	var todo []job
	for i := range 16 {
		s := randomMerge(r, i)
		sub := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(sub, 0o777); err != nil {
			t.Fatal(err)
		}
		paths := writeParts(t, sub, s.parts)
		files := openParts(t, paths)
		m, err := NewMerge(ctx, files)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		ours := filepath.Join(sub, "ours.faiss")
		if err := m.WriteFile(ctx, ours, 1+i%3, nil); err != nil {
			t.Fatal(err)
		}
		method := "merge_into"
		if s.parts[0].Rotation == nil && i%2 == 0 {
			method = "merge_from"
		}
		theirs := filepath.Join(sub, "faiss.faiss")
		fmt.Fprintf(&jobs, "%s %s %s\n", method, theirs, strings.Join(paths, " "))
		todo = append(todo, job{fmt.Sprintf("%s-%s", s.name, method), ours, theirs})
	}
	jobFile := filepath.Join(dir, "jobs")
	if err := os.WriteFile(jobFile, []byte(jobs.String()), 0o666); err != nil {
		t.Fatal(err)
	}
	testutil.Run{Script: pyMerge, Args: []string{jobFile}, Env: []string{"OMP_NUM_THREADS=1"}}.Output(t)
	for _, j := range todo {
		t.Run(j.name, func(t *testing.T) {
			ours, err := os.ReadFile(j.ours)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := os.ReadFile(j.theirs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("Merge writes %d bytes, FAISS %d, differing at byte %d", len(ours), len(theirs), firstDiff(ours, theirs))
			}
		})
	}
}
