package faissio

// Data moves between .npy files and []float32 / []int64 memory as raw bytes,
// without per-element decoding. That is only right on a little-endian host;
// the project targets amd64 and arm64, both little-endian (the FAISS index
// format is little-endian as well).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unsafe"

	"codeberg.org/sbinet/npyio/npy"
	"golang.org/x/sys/unix"
)

// mmapThreshold is the data size from which ReadNpy maps a little-endian
// float32 file instead of reading it: for large inputs a copy on the heap
// only doubles the memory that the page cache already holds. It is a
// variable so that tests can force either path.
var mmapThreshold int64 = 64 << 20

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// npyAlign is the boundary numpy pads the header to, so that the data can
// be used in place from a mapping; WriteNpy does the same.
const npyAlign = 64

// ReadNpy reads a 2-D float matrix from the .npy file at path.
//
// The dtype may be float32, float16 or float64, in either byte order;
// float16 and float64 are converted to float32 (a float64 beyond the
// float32 range is an error). The array must be in C order with at least
// one row and one column. Errors are one line and start with path.
//
// A little-endian float32 file with at least 64 MiB of data is not read
// but memory-mapped privately: Data aliases the mapping, edits to Data stay
// in memory and never reach the file, and the mapping lives for the rest of
// the process. As with any mapping, the file must not be truncated while in
// use.
func ReadNpy(path string) (Matrix, error) {
	m, _, err := readNpy(path)
	return m, err
}

// readNpy is ReadNpy that also returns the mapping Data aliases, or nil if
// the data was read, so that tests can tell the paths apart and unmap.
func readNpy(path string) (m Matrix, mapping []byte, err error) {
	return readNpyInto(path, nil)
}

// readNpyInto is readNpy reading into dst, if not nil, rather than into
// memory of its own; dst must have room for exactly the file's matrix.
func readNpyInto(path string, dst []float32) (m Matrix, mapping []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return Matrix{}, nil, pathError(path, err)
	}
	defer f.Close()
	h, err := readNpyHeader(f, path)
	if err != nil {
		return Matrix{}, nil, err
	}
	if err := h.checkFloatMatrix(); err != nil {
		return Matrix{}, nil, err
	}
	dt := h.dtype()
	rows, cols := h.shape[0], h.shape[1]
	m = Matrix{Rows: rows, Cols: cols}
	n, ok := mulInt(rows, cols)
	if !ok {
		return Matrix{}, nil, fmt.Errorf("%s: %s matrix has more values than an int counts", path, shapeString(h.shape))
	}
	if dst != nil && len(dst) != n {
		return Matrix{}, nil, fmt.Errorf("%s: changed while being read", path)
	}

	// A float32 pointer into the mapping must be 4-byte aligned; numpy
	// aligns the data to 64 bytes, but other writers (npyio's among them)
	// do not, and such files take the read path.
	if dst == nil && dt.size == 4 && !dt.bigEndian && int64(n)*4 >= mmapThreshold && h.offset%4 == 0 {
		mem, err := unix.Mmap(int(f.Fd()), 0, int(h.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
		if err == nil {
			m.Data = unsafe.Slice((*float32)(unsafe.Pointer(&mem[h.offset])), n)
			return m, mem, nil
		}
		// Mapping is only an optimisation; a filesystem that refuses it
		// can still be read.
	}

	m.Data = dst
	if m.Data == nil {
		m.Data = make([]float32, n)
	}
	r := io.NewSectionReader(f, h.offset, h.size-h.offset)
	order := dt.byteOrder()
	switch dt.size {
	case 4:
		if _, err := io.ReadFull(r, asBytes(m.Data)); err != nil {
			return Matrix{}, nil, h.readError(err)
		}
		if dt.bigEndian {
			for i, v := range m.Data {
				m.Data[i] = math.Float32frombits(bits.ReverseBytes32(math.Float32bits(v)))
			}
		}
	default:
		err = h.readChunks(r, dt.size, n, func(first int, b []byte) error {
			dst := m.Data[first : first+len(b)/dt.size]
			if i := decodeFloats(dst, b, dt.size, order); i >= 0 {
				j := first + i
				return fmt.Errorf("%s: row %d, column %d: float64 value %g does not fit in float32", path, j/cols, j%cols, math.Float64frombits(order.Uint64(b[8*i:])))
			}
			return nil
		})
	}
	if err != nil {
		return Matrix{}, nil, err
	}
	return m, nil, nil
}

// ReadIDs reads n vector ids from the .npy file at path: a 1-D array of
// length n, or an (n, 1) column, of int64, int32, uint32 or uint64, in
// either byte order. Ids must be >= 0 and fit in int64, because FAISS keeps
// them as int64 and uses -1 for "no result"; they must be unique, because a
// search result that names an id must name one vector.
func ReadIDs(path string, n int) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathError(path, err)
	}
	defer f.Close()
	h, err := readNpyHeader(f, path)
	if err != nil {
		return nil, err
	}
	dt := h.dtype()
	if !(dt.kind == 'i' && (dt.size == 4 || dt.size == 8)) && !(dt.kind == 'u' && (dt.size == 4 || dt.size == 8)) {
		return nil, fmt.Errorf("%s: unsupported dtype %s for ids (want int64, int32, uint32 or uint64)", path, dt)
	}
	// Fortran order is harmless here: a single column is laid out the same
	// either way.
	if len(h.shape) != 1 && !(len(h.shape) == 2 && h.shape[1] == 1) {
		return nil, fmt.Errorf("%s: ids must have shape (n,) or (n, 1), not %s", path, shapeString(h.shape))
	}
	if h.shape[0] != n {
		return nil, fmt.Errorf("%s: %d ids for %d vectors", path, h.shape[0], n)
	}
	if err := h.checkDataSize(dt); err != nil {
		return nil, err
	}

	ids := make([]int64, n)
	order := dt.byteOrder()
	r := io.NewSectionReader(f, h.offset, h.size-h.offset)
	err = h.readChunks(r, dt.size, n, func(first int, b []byte) error {
		dst := ids[first : first+len(b)/dt.size]
		for i := range dst {
			switch {
			case dt.kind == 'i' && dt.size == 8:
				dst[i] = int64(order.Uint64(b[8*i:]))
			case dt.kind == 'i':
				dst[i] = int64(int32(order.Uint32(b[4*i:])))
			case dt.size == 4:
				dst[i] = int64(order.Uint32(b[4*i:]))
			default:
				u := order.Uint64(b[8*i:])
				if u > math.MaxInt64 {
					return fmt.Errorf("%s: id %d at position %d does not fit in int64", path, u, first+i)
				}
				dst[i] = int64(u)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := CheckIDs(ids, n); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}

// CheckIDs checks ids as ReadIDs checks the ids it reads, for ids that come
// from elsewhere (memory, another format): one for each of the n vectors,
// none negative, since FAISS keeps ids as int64 and uses -1 for "no result",
// and no two alike, since a search result that names an id must name one
// vector. Positions count from 0, as numpy indexes them.
func CheckIDs(ids []int64, n int) error {
	if len(ids) != n {
		return fmt.Errorf("%d ids for %d vectors", len(ids), n)
	}
	for i, id := range ids {
		if id < 0 {
			return fmt.Errorf("id %d at position %d is negative", id, i)
		}
	}
	return checkUnique(ids)
}

// checkUnique reports the first id that repeats an earlier one. Sorting a
// copy keeps the common, valid case at 8 bytes per id; only when there is
// a duplicate does it spend a map, on the repeated values alone, to name the
// first repeat and both its positions.
func checkUnique(ids []int64) error {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	repeated := make(map[int64]int) // value -> first position, once seen
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			repeated[sorted[i]] = -1
		}
	}
	if len(repeated) == 0 {
		return nil
	}
	for j, id := range ids {
		i, ok := repeated[id]
		if !ok {
			continue
		}
		if i >= 0 {
			return fmt.Errorf("duplicate id %d at positions %d and %d", id, i, j)
		}
		repeated[id] = j
	}
	panic("unreachable: a repeated value occurs twice")
}

// WriteNpy writes m to path as a C-order 2-D float32 ('<f4') .npy file,
// atomically (see WriteFileAtomic).
func WriteNpy(path string, m Matrix) error {
	if n, ok := mulInt(m.Rows, m.Cols); !ok || len(m.Data) != n {
		return fmt.Errorf("%s: matrix is %dx%d but has %d values", path, m.Rows, m.Cols, len(m.Data))
	}
	return writeNpy(path, "<f4", m.Rows, m.Cols, asBytes(m.Data))
}

// WriteNpyInt64 writes the rows x cols row-major data to path as a C-order
// 2-D int64 ('<i8') .npy file, atomically (see WriteFileAtomic).
func WriteNpyInt64(path string, rows, cols int, data []int64) error {
	if n, ok := mulInt(rows, cols); !ok || len(data) != n {
		return fmt.Errorf("%s: matrix is %dx%d but has %d values", path, rows, cols, len(data))
	}
	return writeNpy(path, "<i8", rows, cols, asBytes(data))
}

func writeNpy(path, descr string, rows, cols int, data []byte) error {
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }", descr, rows, cols)
	// Version 1.0 (2-byte header length) is readable by every numpy, and a
	// 2-D shape never needs more.
	const preamble = len(npyMagic) + 2 + 2
	pad := (npyAlign - (preamble+len(dict)+1)%npyAlign) % npyAlign
	hdr := make([]byte, 0, preamble+len(dict)+pad+1)
	hdr = append(hdr, npyMagic...)
	hdr = append(hdr, 1, 0)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(dict)+pad+1))
	hdr = append(hdr, dict...)
	hdr = append(hdr, bytes.Repeat([]byte{' '}, pad)...)
	hdr = append(hdr, '\n')
	return WriteFileAtomic(path, func(f *os.File) error {
		if _, err := f.Write(hdr); err != nil {
			return fmt.Errorf("%s: %w", path, unwrapPathError(err))
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("%s: %w", path, unwrapPathError(err))
		}
		return nil
	})
}

// npyHeader is what is known about a .npy file before its data is touched.
type npyHeader struct {
	path    string
	descr   string // as in the header without quotes, e.g. "<f4"
	shape   []int
	fortran bool
	offset  int64 // of the data, just past the header
	size    int64 // of the file
}

// readNpyHeader reads and checks the header of the .npy file f, named path.
//
// The preamble (magic, version, header length) is read here rather than by
// npyio, for two reasons: npyio allocates whatever length the file claims,
// up to 4 GiB, before checking it against anything; and it knows only
// versions 1 and 2. The header dictionary is then parsed by npyio from
// memory, which also pins the data offset: npyio consumes exactly the
// header's bytes and reads nothing ahead.
func readNpyHeader(f *os.File, path string) (*npyHeader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, pathError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	h := &npyHeader{path: path, size: fi.Size()}

	var pre [12]byte
	n, err := f.ReadAt(pre[:min(int64(len(pre)), h.size)], 0)
	if err != nil && err != io.EOF {
		return nil, pathError(path, err)
	}
	if n < len(npyMagic) || string(pre[:len(npyMagic)]) != npyMagic {
		return nil, fmt.Errorf("%s: not a .npy file (bad magic)", path)
	}
	var preLen, hdrLen int64 // preamble; preamble and dictionary
	major := pre[6]
	switch major {
	case 1:
		preLen = 10
	case 2, 3:
		preLen = 12
	default:
		if n < 8 {
			return nil, fmt.Errorf("%s: truncated: the file ends inside the .npy preamble", path)
		}
		return nil, fmt.Errorf("%s: unsupported .npy format version %d.%d", path, major, pre[7])
	}
	if int64(n) < preLen {
		return nil, fmt.Errorf("%s: truncated: the file ends inside the .npy preamble", path)
	}
	if major == 1 {
		hdrLen = preLen + int64(binary.LittleEndian.Uint16(pre[8:]))
	} else {
		hdrLen = preLen + int64(binary.LittleEndian.Uint32(pre[8:]))
	}
	if hdrLen > h.size {
		return nil, fmt.Errorf("%s: truncated: header of %d bytes but the file has only %d", path, hdrLen, h.size)
	}
	h.offset = hdrLen

	hdr := make([]byte, hdrLen)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, h.readError(err)
	}
	// npyio slices the header at its last newline without checking there
	// is one, and panics if not.
	if bytes.IndexByte(hdr[preLen:], '\n') < 0 {
		return nil, fmt.Errorf("%s: malformed .npy header: no terminating newline", path)
	}
	// Version 3 differs from 2 only in allowing UTF-8 in structured field
	// names, which a float matrix never has.
	if major == 3 {
		hdr[6] = 2
	}
	r := bytes.NewReader(hdr)
	parsed, err := parseNpyHeader(r)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed .npy header: %s", path, oneLine(strings.TrimPrefix(err.Error(), "npy: ")))
	}
	if r.Len() != 0 {
		// Never seen with npyio v0.14.0; refuse rather than read the data
		// from the wrong offset if a later version changes.
		return nil, fmt.Errorf("%s: malformed .npy header: %d header bytes left unparsed", path, r.Len())
	}
	h.descr = strings.TrimSuffix(strings.TrimPrefix(parsed.Descr.Type, "'"), "'")
	h.shape = parsed.Descr.Shape
	h.fortran = parsed.Descr.Fortran
	for _, d := range h.shape {
		if d < 0 {
			return nil, fmt.Errorf("%s: malformed .npy header: negative dimension in shape %s", path, shapeString(h.shape))
		}
	}
	return h, nil
}

// parseNpyHeader runs npyio's header parser, turning its panics into
// errors: npyio v0.14.0 cuts the dictionary at the positions of its keys
// and panics with "slice bounds out of range" when a crafted header puts
// them out of numpy's order.
func parseNpyHeader(r io.Reader) (h npy.Header, err error) {
	defer func() {
		if e := recover(); e != nil {
			err = errors.New("unparsable header dictionary")
		}
	}()
	nr, err := npy.NewReader(r)
	if err != nil {
		return npy.Header{}, err
	}
	return nr.Header, nil
}

// checkFloatMatrix checks that h describes a non-empty C-order 2-D matrix
// of a float dtype ReadNpy converts, and that the file holds its data.
func (h *npyHeader) checkFloatMatrix() error {
	dt := h.dtype()
	if dt.kind != 'f' || (dt.size != 2 && dt.size != 4 && dt.size != 8) {
		return fmt.Errorf("%s: unsupported dtype %s (want float32, float16 or float64)", h.path, dt)
	}
	if len(h.shape) != 2 {
		return fmt.Errorf("%s: %d-D array of shape %s; want a 2-D (rows, dims) matrix", h.path, len(h.shape), shapeString(h.shape))
	}
	if h.fortran {
		return fmt.Errorf("%s: Fortran-order arrays are not supported; save with np.ascontiguousarray", h.path)
	}
	if h.shape[0] == 0 || h.shape[1] == 0 {
		return fmt.Errorf("%s: empty matrix of shape %s; want at least one row and one column", h.path, shapeString(h.shape))
	}
	return h.checkDataSize(dt)
}

// checkDataSize checks that the file holds exactly the data its header
// describes. It runs before anything is allocated for the data, so that a
// lying header costs an error, not memory.
func (h *npyHeader) checkDataSize(dt dtype) error {
	need, ok := uint64(dt.size), true
	for _, d := range h.shape {
		hi, lo := bits.Mul64(need, uint64(d))
		need = lo
		ok = ok && hi == 0
	}
	have := uint64(h.size - h.offset)
	dims := make([]string, len(h.shape))
	for i, d := range h.shape {
		dims[i] = strconv.Itoa(d)
	}
	what := strings.Join(dims, "x") + " " + dt.String()
	switch {
	case !ok || need > math.MaxInt64:
		return fmt.Errorf("%s: truncated: header says %s (more than 2^63 bytes) but only %d data bytes follow", h.path, what, have)
	case need > have:
		return fmt.Errorf("%s: truncated: header says %s (%d bytes) but only %d data bytes follow", h.path, what, need, have)
	case need < have:
		return fmt.Errorf("%s: %d unexpected bytes after the %s data (%d bytes)", h.path, have-need, what, need)
	}
	return nil
}

// readError describes a failure to read data that checkDataSize promised
// was there: the file changed under us, or the disk failed.
func (h *npyHeader) readError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s: file shrank while being read", h.path)
	}
	return fmt.Errorf("%s: read: %w", h.path, unwrapPathError(err))
}

// dtype is a numpy scalar type descriptor such as "<f4", split up.
type dtype struct {
	descr     string // the original, for types that have no short name
	kind      byte   // numpy's kind character: 'f', 'i', 'u', 'b', 'O', ...
	size      int    // bytes per element; 0 if the descriptor has none
	bigEndian bool
}

func (h *npyHeader) dtype() dtype {
	dt := dtype{descr: h.descr}
	s := h.descr
	if s != "" && strings.IndexByte("<>|=", s[0]) >= 0 {
		dt.bigEndian = s[0] == '>'
		s = s[1:]
	}
	if s == "" {
		return dt
	}
	dt.kind = s[0]
	if size, err := strconv.Atoi(s[1:]); err == nil && size > 0 {
		dt.size = size
	} else {
		dt.kind = 0 // "M8[ns]", "[('a', '<f4')]" and the like
	}
	return dt
}

// String returns numpy's name for dt, such as "float32", for messages.
func (dt dtype) String() string {
	b := strconv.Itoa(8 * dt.size)
	switch dt.kind {
	case 'f':
		return "float" + b
	case 'i':
		return "int" + b
	case 'u':
		return "uint" + b
	case 'c':
		return "complex" + b
	case 'b':
		return "bool"
	case 'U':
		return "str"
	case 'S':
		return "bytes"
	case 'V':
		return "void"
	}
	if dt.descr == "|O" || dt.descr == "O" {
		return "object"
	}
	return oneLine(dt.descr)
}

func (dt dtype) byteOrder() binary.ByteOrder {
	if dt.bigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// readChunks reads n elements of size bytes from r in pieces of at most
// 1 MiB and hands each to convert with the index of its first element, so
// that converting a file needs no second copy of it in memory. Errors from
// convert are returned as they are.
func (h *npyHeader) readChunks(r io.Reader, size, n int, convert func(first int, b []byte) error) error {
	per := max(1, (1<<20)/size)
	buf := make([]byte, min(per, n)*size)
	for first := 0; first < n; first += per {
		b := buf[:min(per, n-first)*size]
		if _, err := io.ReadFull(r, b); err != nil {
			return h.readError(err)
		}
		if err := convert(first, b); err != nil {
			return err
		}
	}
	return nil
}

// decodeFloats converts the float16, float32 or float64 values (elem bytes
// each, in order's byte order) in b into dst, and returns the index of the
// first float64 beyond float32's range, or -1.
func decodeFloats(dst []float32, b []byte, elem int, order binary.ByteOrder) int {
	switch elem {
	case 2:
		for i := range dst {
			dst[i] = halfToFloat32(order.Uint16(b[2*i:]))
		}
	case 4:
		for i := range dst {
			dst[i] = math.Float32frombits(order.Uint32(b[4*i:]))
		}
	case 8:
		for i := range dst {
			v := math.Float64frombits(order.Uint64(b[8*i:]))
			dst[i] = float32(v)
			if math.IsInf(float64(dst[i]), 0) && !math.IsInf(v, 0) {
				return i
			}
		}
	}
	return -1
}

// halfToFloat32 converts an IEEE 754 binary16 value to float32, exactly:
// every half, subnormals included, is representable as a float32. NaN
// payloads and signs are kept.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half (mant * 2^-24): normal as a float32, once the leading
	// one is shifted up to the implicit bit.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// shapeString formats shape as Python prints a tuple: "(3,)", "(2, 3)".
func shapeString(shape []int) string {
	if len(shape) == 1 {
		return "(" + strconv.Itoa(shape[0]) + ",)"
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	return "(" + strings.Join(dims, ", ") + ")"
}

// oneLine keeps text taken from a file fit for a one-line message: quoted
// if it holds anything unprintable, and cut if long.
func oneLine(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// pathError formats an os error as "path: reason", one line, keeping
// errors.Is(err, fs.ErrNotExist) and the like true.
func pathError(path string, err error) error {
	return fmt.Errorf("%s: %w", path, unwrapPathError(err))
}

// asBytes views s as its bytes, in the host's byte order (little-endian on
// every platform the project targets).
func asBytes[T float32 | int32 | int64](s []T) []byte {
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}
