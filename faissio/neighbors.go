package faissio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// VectorFiles returns the files ReadVectors(path) reads, in the order it
// concatenates them, so that a caller can fingerprint exactly those bytes.
func VectorFiles(path string) ([]string, error) {
	if files, ok, err := parquetFiles(path); ok || err != nil {
		return files, err
	}
	return vectorFiles(path)
}

// ReadNeighbors reads a ground-truth table of nearest-neighbour ids, one row
// per query, from an .ivecs file (as shipped with SIFT and GIST) or a 2-D
// C-order .npy of int32 or int64 (as numpy or FAISS's search writes it).
// Negative entries are kept: FAISS uses -1 for "no result".
func ReadNeighbors(path string) (rows, cols int, data []int64, err error) {
	switch filepath.Ext(path) {
	case ".ivecs":
		r, c, d32, err := ReadIvecs(path)
		if err != nil {
			return 0, 0, nil, err
		}
		data = make([]int64, len(d32))
		for i, v := range d32 {
			data[i] = int64(v)
		}
		return r, c, data, nil
	case ".npy":
		return readNpyInts(path)
	}
	return 0, 0, nil, fmt.Errorf("%s: unknown neighbour file type %q (want .ivecs or .npy)", path, filepath.Ext(path))
}

// readNpyInts reads a 2-D C-order int32 or int64 .npy file.
func readNpyInts(path string) (rows, cols int, data []int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, nil, pathError(path, err)
	}
	defer f.Close()
	h, err := readNpyHeader(f, path)
	if err != nil {
		return 0, 0, nil, err
	}
	dt := h.dtype()
	if dt.kind != 'i' || (dt.size != 4 && dt.size != 8) {
		return 0, 0, nil, fmt.Errorf("%s: unsupported dtype %s for neighbour ids (want int32 or int64)", path, dt)
	}
	if len(h.shape) != 2 {
		return 0, 0, nil, fmt.Errorf("%s: neighbour ids must be 2-D (queries, k), not %s", path, shapeString(h.shape))
	}
	if h.fortran && h.shape[0] > 1 && h.shape[1] > 1 {
		return 0, 0, nil, fmt.Errorf("%s: Fortran-order arrays are not supported; save with np.ascontiguousarray", path)
	}
	if err := h.checkDataSize(dt); err != nil {
		return 0, 0, nil, err
	}
	rows, cols = h.shape[0], h.shape[1]
	n, ok := mulInt(rows, cols)
	if !ok {
		return 0, 0, nil, fmt.Errorf("%s: %s table has more values than an int counts", path, shapeString(h.shape))
	}
	data = make([]int64, n)
	order := dt.byteOrder()
	r := io.NewSectionReader(f, h.offset, h.size-h.offset)
	err = h.readChunks(r, dt.size, len(data), func(first int, b []byte) error {
		dst := data[first : first+len(b)/dt.size]
		for i := range dst {
			if dt.size == 8 {
				dst[i] = int64(order.Uint64(b[8*i:]))
			} else {
				dst[i] = int64(int32(order.Uint32(b[4*i:])))
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, nil, err
	}
	return rows, cols, data, nil
}
