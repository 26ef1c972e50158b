package faissio

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzReadIndex feeds ReadIndex arbitrary bytes, starting from files FAISS
// wrote (testdata/*.index), small FastScan and HNSW indexes, and broken
// copies of them. It must never panic,
// its errors must be one line with an offset, and since ReadIndex accepts
// only the encoding FAISS's writer produces, whatever it reads must write
// back as exactly the bytes it read.
func FuzzReadIndex(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:len(b)-1])
		for _, off := range []int{4, 32, 37, len(b) / 3, len(b) - 9} {
			c := bytes.Clone(b)
			c[off] ^= 0x41
			f.Add(c)
		}
	}
	// Small FastScan and HNSW records built here, which reach their
	// fields sooner than the fixtures do, whole and with one field
	// corrupted in each part of the record.
	r := ixRand(17)
	hq := ixIVFPQFastScan(r, L2, 4, 2, 32, []int{33, 0, 1})
	hq.Quantizer = ixHNSWFlat(r, L2, 4, 3)
	for _, ix := range []Index{ixPQFastScan(r, L2, 6, 3, 5, 32), ixIVFPQFastScan(r, InnerProduct, 4, 2, 64, []int{2, 0}),
		ixHNSWFlat(r, L2, 2, 4), ixHNSWFlat(r, InnerProduct, 2, 0), hq} {
		var b bytes.Buffer
		if err := WriteIndex(&b, ix); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		for k := 1; k < 8; k++ {
			c := bytes.Clone(b.Bytes())
			c[k*len(c)/8] ^= 0x03
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ReadIndex(bytes.NewReader(b))
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "faiss index: byte ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error not one line with an offset: %q", msg)
			}
			return
		}
		var out bytes.Buffer
		if err := WriteIndex(&out, ix); err != nil {
			t.Fatalf("read succeeded but writing fails: %v", err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("rewriting %d bytes gives %d, differing at byte %d", len(b), out.Len(), firstDiff(out.Bytes(), b))
		}
		// Whatever IVFParamsOf accepts, NewIVFIndex must rebuild.
		if p, err := IVFParamsOf(ix); err == nil {
			if _, err := NewIVFIndex(p); err != nil {
				t.Fatalf("NewIVFIndex of IVFParamsOf: %v", err)
			}
		}
	})
}
