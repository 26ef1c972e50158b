//go:build cgo

package faissio_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	faiss "github.com/distillvq/distillvq/cgo"
	"github.com/distillvq/distillvq/faissio"
)

// TestWriteIVFMatchesFAISS: WriteIVF writes the bytes FAISS writes for the
// index cgo's NewIVF builds from the same parameters, for IVFFlat and
// IVFPQ of several nbits, both list encodings, with and without rotation.
func TestWriteIVFMatchesFAISS(t *testing.T) {
	r := newRand(21)
	for i, c := range []struct{ m, nbits, nlist, used, n int }{
		{0, 0, 6, 6, 40},
		{0, 0, 9, 2, 7},
		{4, 8, 6, 5, 60},
		{8, 3, 20, 4, 33},
		{2, 5, 5, 5, 1},
		{16, 1, 3, 1, 0},
		{4, 7, 12, 12, 300},
	} {
		for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
			rot := i%2 == 0
			t.Run(fmt.Sprintf("M%d-nbits%d-nlist%d-used%d-n%d-%v-rot%v", c.m, c.nbits, c.nlist, c.used, c.n, metric, rot), func(t *testing.T) {
				p := faissio.IVFParams{D: 16, Metric: metric, Nlist: c.nlist, M: c.m, Nbits: c.nbits}
				p.Centroids = r.floats(p.Nlist * p.D)
				if p.M > 0 {
					p.Codebooks = r.floats(p.D << p.Nbits)
				}
				if rot {
					p.Rotation = r.floats(p.D * p.D)
				}
				for k := range c.n {
					p.Lists = append(p.Lists, int64((r.intn(c.used)*7)%c.nlist))
					p.IDs = append(p.IDs, int64(1000+11*k))
				}
				p.Codes = r.bytes(c.n * p.CodeSize())
				cix, err := faiss.NewIVF(p)
				if err != nil {
					t.Fatal(err)
				}
				defer cix.Close()
				_, want := faissBytes(t, cix)
				var got bytes.Buffer
				if err := faissio.WriteIVF(context.Background(), &got, &p, nil); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("WriteIVF writes %d bytes, FAISS %d, differing at byte %d", got.Len(), len(want), diffAt(got.Bytes(), want))
				}
			})
		}
	}
}
