package faissio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// randomIVFParams draws the parameters of an index of n vectors: IVFFlat
// or IVFPQ of any nbits, either metric, with or without a rotation, and,
// when used is below nlist, only used of the lists non-empty (so that the
// sparse list encoding is taken).
func randomIVFParams(r *rand.Rand, d, nlist, used, m, nbits, n int, metric Metric, rotation bool) *IVFParams {
	p := &IVFParams{D: d, Metric: metric, Nlist: nlist, M: m, Nbits: nbits}
	p.Centroids = ixFloats(r, nlist*d)
	if m > 0 {
		p.Codebooks = ixFloats(r, d<<nbits)
	}
	if rotation {
		p.Rotation = ixFloats(r, d*d)
	}
	lists := r.Perm(nlist)[:used]
	p.Lists = make([]int64, n)
	p.IDs = make([]int64, n)
	for i := range n {
		p.Lists[i] = int64(lists[r.IntN(used)])
		p.IDs[i] = int64(r.Uint32())<<8 | int64(i&0xff)
	}
	p.Codes = ixBytes(r, n*p.CodeSize())
	return p
}

// indexBytes is what WriteIndex writes of NewIVFIndex(p).
func indexBytes(t *testing.T, p *IVFParams) []byte {
	t.Helper()
	ix, err := NewIVFIndex(*p)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteIndex(&b, ix); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// progressLog records progress calls and checks them: the same total,
// ascending, no more than about 100 of them, the last one complete.
type progressLog struct{ calls [][2]int }

func (l *progressLog) record(done, total int) { l.calls = append(l.calls, [2]int{done, total}) }

func (l *progressLog) check(t *testing.T, nlist int) {
	t.Helper()
	if len(l.calls) == 0 || l.calls[len(l.calls)-1] != [2]int{nlist, nlist} {
		t.Errorf("progress calls %v do not end at %d of %d", l.calls, nlist, nlist)
		return
	}
	if len(l.calls) > min(nlist, 200) {
		t.Errorf("%d progress calls for %d lists", len(l.calls), nlist)
	}
	for i, c := range l.calls {
		if c[1] != nlist || c[0] < 1 || i > 0 && c[0] <= l.calls[i-1][0] {
			t.Errorf("progress calls %v", l.calls)
			return
		}
	}
}

// TestWriteIVFMatchesWriteIndex compares WriteIVF with WriteIndex of
// NewIVFIndex on 60 random shapes, with the narrow and the wide ordering.
func TestWriteIVFMatchesWriteIndex(t *testing.T) {
	r := ixRand(11)
	encodings := map[string]int{}
	for i := range 60 {
		m, nbits := 0, 0
		d := 1 + r.IntN(24)
		if i%3 != 0 {
			divisors := []int{}
			for k := 1; k <= d; k++ {
				if d%k == 0 {
					divisors = append(divisors, k)
				}
			}
			m, nbits = divisors[r.IntN(len(divisors))], 1+r.IntN(8)
		}
		nlist := []int{1, 2, 3, 7, 40, 257}[r.IntN(6)]
		used := 1 + r.IntN(nlist)
		if i%2 == 0 {
			used = 1 + r.IntN(max(1, nlist/2)) // sparse
		}
		n := []int{0, 1, 2, 17, 500, 3000}[i%6]
		metric := Metric(r.IntN(2))
		rotation := r.IntN(2) == 0
		p := randomIVFParams(r, d, nlist, used, m, nbits, n, metric, rotation)
		wide := i%4 == 3
		name := fmt.Sprintf("d%d-nlist%d-used%d-M%d-nbits%d-n%d-%v-rot%v-wide%v", d, nlist, used, m, nbits, n, metric, rotation, wide)
		t.Run(name, func(t *testing.T) {
			if wide {
				old := narrowOrderLimit
				narrowOrderLimit = 0
				defer func() { narrowOrderLimit = old }()
			}
			want := checkWriteIVF(t, p, nlist)
			var got bytes.Buffer
			if k := bytes.Index(want, []byte("ilar")); k >= 0 {
				encodings[string(want[k+20:k+24])]++
			}
			if err := WriteIVF(context.Background(), &got, p, nil); err != nil {
				t.Errorf("without progress: %v", err)
			}
		})
	}
	if encodings["full"] < 5 || encodings["sprs"] < 5 {
		t.Errorf("list encodings tested: %v", encodings)
	}
}

// checkWriteIVF writes p with WriteIVF and fails the test unless it gives
// WriteIndex's bytes, with progress reported over nlist lists; it returns
// those bytes.
func checkWriteIVF(t *testing.T, p *IVFParams, nlist int) []byte {
	t.Helper()
	want := indexBytes(t, p)
	var got bytes.Buffer
	var log progressLog
	if err := WriteIVF(context.Background(), &got, p, log.record); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("WriteIVF writes %d bytes, WriteIndex %d, differing at byte %d", got.Len(), len(want), firstDiff(got.Bytes(), want))
	}
	log.check(t, nlist)
	return want
}

// bigIVFFlat is an IVFFlat of 40000 vectors of 64 dimensions, 10 MiB of
// codes in 5 lists: large enough for many buffer flushes and context checks.
func bigIVFFlat() *IVFParams {
	return randomIVFParams(ixRand(12), 64, 5, 5, 0, 0, 40000, L2, true)
}

func TestWriteIVFLarge(t *testing.T) {
	p := bigIVFFlat()
	want := checkWriteIVF(t, p, 5)

	path := filepath.Join(t.TempDir(), "x.faiss")
	if err := WriteIVFFile(context.Background(), path, p, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, want) {
		t.Errorf("WriteIVFFile: %d bytes, differing at %d (%v)", len(b), firstDiff(b, want), err)
	}
}

// cancellingWriter cancels its context once it has received after bytes,
// and counts what it receives.
type cancellingWriter struct {
	cancel func()
	after  int
	n      int
}

func (w *cancellingWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	if w.n >= w.after {
		w.cancel()
	}
	return len(b), nil
}

func TestWriteIVFCancel(t *testing.T) {
	p := bigIVFFlat()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var b bytes.Buffer
	err := WriteIVF(cancelled, &b, p, nil)
	if !errors.Is(err, context.Canceled) || err != cancelled.Err() || b.Len() != 0 {
		t.Errorf("cancelled before: %v, %d bytes written", err, b.Len())
	}

	// Cancelled during list 0 or 1 (2 MiB each): WriteIVF stops within a
	// few MiB, at the next list or the next 4 MiB.
	for _, after := range []int{1, 1 << 20, 5 << 20} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancellingWriter{cancel: cancel, after: after}
		var log progressLog
		err := WriteIVF(ctx, w, p, log.record)
		if err != context.Canceled {
			t.Errorf("cancelled after %d bytes: %v", after, err)
		}
		if w.n > after+(5<<20)+(64<<10) {
			t.Errorf("cancelled after %d bytes, wrote %d", after, w.n)
		}
		if len(log.calls) > after/(2<<20)+1 {
			t.Errorf("cancelled after %d bytes: progress %v", after, log.calls)
		}
	}

	// A bad p writes nothing, whatever the context.
	bad := *p
	bad.Nlist = 0
	for _, ctx := range []context.Context{context.Background(), cancelled} {
		var b bytes.Buffer
		err := WriteIVF(ctx, &b, &bad, nil)
		if err == nil || err.Error() != "faiss index: nlist 0, want at least 1" || b.Len() != 0 {
			t.Errorf("bad parameters: %v, %d bytes written", err, b.Len())
		}
	}
	if err := WriteIVF(context.Background(), &b, nil, nil); err == nil || err.Error() != "faiss index: nil IVF parameters" {
		t.Errorf("nil parameters: %v", err)
	}
	big := IVFParams{D: 1<<20 + 1, Metric: L2, Nlist: 1, Centroids: make([]float32, 1<<20+1)}
	if err := WriteIVF(context.Background(), &b, &big, nil); err == nil || b.Len() != 0 {
		t.Errorf("dimension above FAISS's limit: %v, %d bytes written", err, b.Len())
	} else if _, want := NewIVFIndex(big); want == nil || !strings.HasSuffix(want.Error(), strings.TrimPrefix(err.Error(), "faiss index: ")) {
		t.Errorf("dimension above FAISS's limit: %v, NewIVFIndex says %v", err, want)
	}
}

func TestWriteIVFFileCancel(t *testing.T) {
	p := bigIVFFlat()
	dir := t.TempDir()
	path := filepath.Join(dir, "x.faiss")

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	err := WriteIVFFile(cancelled, path, p, nil)
	if !errors.Is(err, context.Canceled) || err.Error() != path+": context canceled" {
		t.Errorf("cancelled before: %v", err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Errorf("cancelled before: left %v", names)
	}

	// Cancelled during the write, by the progress of list 1: no file, and
	// an old file stays as it was.
	for _, old := range []bool{false, true} {
		if old {
			if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := WriteIVFFile(ctx, path, p, func(done, total int) {
			if done == 1 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("cancelled during: %v", err)
		}
		names := dirNames(t, dir)
		if old {
			if b, _ := os.ReadFile(path); !slices.Equal(names, []string{"x.faiss"}) || string(b) != "old" {
				t.Errorf("cancelled during: left %v, the old file holds %q", names, b)
			}
		} else if len(names) != 0 {
			t.Errorf("cancelled during: left %v", names)
		}
	}

	bad := *p
	bad.Codes = bad.Codes[1:]
	err = WriteIVFFile(context.Background(), path, &bad, nil)
	if err == nil || err.Error() != path+": faiss index: 10239999 code bytes, want 40000 vectors * 256" {
		t.Errorf("bad parameters: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Error("bad parameters replaced the old file")
	}
}
