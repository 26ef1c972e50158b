package faissio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio/npy"
	"golang.org/x/sys/unix"
	"gonum.org/v1/gonum/mat"

	"github.com/distillvq/distillvq/internal/testutil"
)

// npyFile builds a version 1.0 .npy file the way numpy lays it out, with
// any dtype and shape, so tests can make files numpy would refuse to.
func npyFile(descr, shape string, fortran bool, data []byte) []byte {
	order := "False"
	if fortran {
		order = "True"
	}
	return npyFileDict(1, fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, order, shape), data)
}

// npyFileDict builds a .npy file around a literal header dictionary.
func npyFileDict(major byte, dict string, data []byte) []byte {
	pre := 10
	if major > 1 {
		pre = 12
	}
	pad := (64 - (pre+len(dict)+1)%64) % 64
	hdr := dict + strings.Repeat(" ", pad) + "\n"
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if major > 1 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	}
	b = append(b, hdr...)
	return append(b, data...)
}

func le32(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func writeTemp(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o666); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErr checks err is exactly path + ": " + suffix, on one line.
func wantErr(t *testing.T, err error, path, suffix string) {
	t.Helper()
	want := path + ": " + suffix
	if err == nil {
		t.Fatalf("got no error, want %q", want)
	}
	if err.Error() != want {
		t.Fatalf("got error\n\t%q\nwant\n\t%q", err.Error(), want)
	}
}

// runNumpy runs a Python script with numpy as np and the directory as dir
// (skipping or failing, by testutil's rule, where Python is missing).
func runNumpy(t *testing.T, dir, script string) {
	t.Helper()
	testutil.RunPython(t, "import sys, numpy as np\ndir = sys.argv[1]\n"+script, dir)
}

func randomMatrix(rows, cols int, seed uint64) Matrix {
	r := rand.New(rand.NewPCG(seed, 1))
	m := Matrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = float32(r.NormFloat64())
	}
	return m
}

func equalMatrix(t *testing.T, got, want Matrix) {
	t.Helper()
	if got.Rows != want.Rows || got.Cols != want.Cols {
		t.Fatalf("got %dx%d, want %dx%d", got.Rows, got.Cols, want.Rows, want.Cols)
	}
	for i := range want.Data {
		if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
			t.Fatalf("value %d (row %d, column %d): got %v, want %v", i, i/want.Cols, i%want.Cols, got.Data[i], want.Data[i])
		}
	}
}

// testMatrix is the 5x3 matrix the numpy tests write in each dtype: values
// k/4 - 1.5, exact in float16.
func testMatrix() Matrix {
	m := Matrix{Rows: 5, Cols: 3, Data: make([]float32, 15)}
	for k := range m.Data {
		m.Data[k] = float32(k)/4 - 1.5
	}
	return m
}

func TestHostIsLittleEndian(t *testing.T) {
	// The raw-bytes fast paths of this package assume it.
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Fatal("big-endian host: faissio's raw data paths would be wrong")
	}
}

func TestWriteNpyReadNpy(t *testing.T) {
	dir := t.TempDir()
	want := randomMatrix(7, 5, 1)
	path := filepath.Join(dir, "m.npy")
	if err := WriteNpy(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNpy(path)
	if err != nil {
		t.Fatal(err)
	}
	equalMatrix(t, got, want)

	b, _ := os.ReadFile(path)
	if len(b) != 128+7*5*4 {
		t.Errorf("file is %d bytes, want a 128-byte header and the data", len(b))
	}
	if !bytes.HasPrefix(b, []byte("\x93NUMPY\x01\x00")) || b[127] != '\n' {
		t.Errorf("header not in numpy's layout: %q", b[:128])
	}

	// Replacing keeps working, and a matrix whose data disagrees with its
	// shape is refused before anything is written.
	if err := WriteNpy(path, Matrix{Rows: 2, Cols: 3, Data: make([]float32, 5)}); err == nil {
		t.Error("WriteNpy accepted a 2x3 matrix with 5 values")
	}
	if got, _ := ReadNpy(path); got.Rows != 7 {
		t.Error("a refused WriteNpy changed the file")
	}
}

func TestReadNpyFromNumpy(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
x = (np.arange(15).reshape(5, 3) / 4 - 1.5)
for dt in ['<f4', '<f2', '<f8', '>f4', '>f2', '>f8']:
    np.save(dir + '/x' + dt[1:] + ('be' if dt[0] == '>' else '') + '.npy', x.astype(dt))
for v in [(1, 0), (2, 0), (3, 0)]:
    with open(dir + '/v%d.npy' % v[0], 'wb') as f:
        np.lib.format.write_array(f, x.astype('<f4'), version=v)
`)
	want := testMatrix()
	for _, name := range []string{"xf4.npy", "xf2.npy", "xf8.npy", "xf4be.npy", "xf2be.npy", "xf8be.npy", "v1.npy", "v2.npy", "v3.npy"} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadNpy(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			equalMatrix(t, got, want)
		})
	}
}

func TestNumpyReadsWriteNpy(t *testing.T) {
	dir := t.TempDir()
	if err := WriteNpy(filepath.Join(dir, "f.npy"), testMatrix()); err != nil {
		t.Fatal(err)
	}
	ids := []int64{5, -1, 1 << 40, 0, 7, 9}
	if err := WriteNpyInt64(filepath.Join(dir, "i.npy"), 3, 2, ids); err != nil {
		t.Fatal(err)
	}
	runNumpy(t, dir, `
np.save(dir + '/numpy.npy', (np.arange(15).reshape(5, 3) / 4 - 1.5).astype(np.float32))
assert open(dir + '/f.npy', 'rb').read() == open(dir + '/numpy.npy', 'rb').read(), 'WriteNpy and np.save differ'
f = np.load(dir + '/f.npy')
assert f.dtype == np.float32 and f.shape == (5, 3) and f.flags.c_contiguous, (f.dtype, f.shape)
assert (f == np.arange(15).reshape(5, 3) / 4 - 1.5).all(), f
i = np.load(dir + '/i.npy')
assert i.dtype == np.int64 and i.shape == (3, 2), (i.dtype, i.shape)
assert i.tolist() == [[5, -1], [1 << 40, 0], [7, 9]], i
`)
}

func TestReadNpyRefuses(t *testing.T) {
	f4 := le32(1, 2, 3, 4, 5, 6)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"1d.npy", npyFile("<f4", "(6,)", false, f4),
			"1-D array of shape (6,); want a 2-D (rows, dims) matrix"},
		{"3d.npy", npyFile("<f4", "(1, 2, 3)", false, f4),
			"3-D array of shape (1, 2, 3); want a 2-D (rows, dims) matrix"},
		{"0d.npy", npyFile("<f4", "()", false, f4[:4]),
			"0-D array of shape (); want a 2-D (rows, dims) matrix"},
		{"fortran.npy", npyFile("<f4", "(2, 3)", true, f4),
			"Fortran-order arrays are not supported; save with np.ascontiguousarray"},
		{"int8.npy", npyFile("|i1", "(2, 3)", false, make([]byte, 6)),
			"unsupported dtype int8 (want float32, float16 or float64)"},
		{"int64.npy", npyFile("<i8", "(2, 3)", false, make([]byte, 48)),
			"unsupported dtype int64 (want float32, float16 or float64)"},
		{"object.npy", npyFile("|O", "(2,)", false, []byte("\x80\x02]q\x00.")),
			"unsupported dtype object (want float32, float16 or float64)"},
		{"bool.npy", npyFile("|b1", "(2, 3)", false, make([]byte, 6)),
			"unsupported dtype bool (want float32, float16 or float64)"},
		{"complex.npy", npyFile("<c8", "(2, 3)", false, make([]byte, 48)),
			"unsupported dtype complex64 (want float32, float16 or float64)"},
		{"str.npy", npyFile("<U2", "(2,)", false, make([]byte, 16)),
			"unsupported dtype str (want float32, float16 or float64)"},
		{"longdouble.npy", npyFile("<f16", "(1, 1)", false, make([]byte, 16)),
			"unsupported dtype float128 (want float32, float16 or float64)"},
		{"datetime.npy", npyFile("<M8[ns]", "(1, 1)", false, make([]byte, 8)),
			"unsupported dtype <M8[ns] (want float32, float16 or float64)"},
		{"struct.npy", npyFileDict(1, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (3,), }", make([]byte, 24)),
			"unsupported dtype [('a', '<f4'), ('b', '<i4')] (want float32, float16 or float64)"},
		{"norows.npy", npyFile("<f4", "(0, 128)", false, nil),
			"empty matrix of shape (0, 128); want at least one row and one column"},
		{"nocols.npy", npyFile("<f4", "(3, 0)", false, nil),
			"empty matrix of shape (3, 0); want at least one row and one column"},
		{"truncated.npy", npyFile("<f4", "(1000, 100)", false, make([]byte, 1234)),
			"truncated: header says 1000x100 float32 (400000 bytes) but only 1234 data bytes follow"},
		{"truncated16.npy", npyFile("<f2", "(2, 3)", false, make([]byte, 11)),
			"truncated: header says 2x3 float16 (12 bytes) but only 11 data bytes follow"},
		{"trailing.npy", npyFile("<f4", "(2, 3)", false, append(f4, 0, 0, 0, 0, 0)),
			"5 unexpected bytes after the 2x3 float32 data (24 bytes)"},
		{"overflow.npy", npyFile("<f8", "(4611686018427387904, 4611686018427387904)", false, f4),
			"truncated: header says 4611686018427387904x4611686018427387904 float64 (more than 2^63 bytes) but only 24 data bytes follow"},
		{"negative.npy", npyFile("<f4", "(-2, -3)", false, f4),
			"malformed .npy header: negative dimension in shape (-2, -3)"},
		{"badmagic.npy", append([]byte("\x93NUMPZ\x01\x00"), make([]byte, 100)...),
			"not a .npy file (bad magic)"},
		{"text.npy", []byte("1.0,2.0\n3.0,4.0\n"),
			"not a .npy file (bad magic)"},
		{"empty.npy", nil,
			"not a .npy file (bad magic)"},
		{"magiconly.npy", []byte("\x93NUMPY"),
			"truncated: the file ends inside the .npy preamble"},
		{"shortpreamble.npy", []byte("\x93NUMPY\x02\x00\x10\x00"),
			"truncated: the file ends inside the .npy preamble"},
		{"version4.npy", []byte("\x93NUMPY\x04\x00\x10\x00\x00\x00"),
			"unsupported .npy format version 4.0"},
		{"hugeheader.npy", []byte("\x93NUMPY\x02\x00\xff\xff\xff\xff{}"),
			"truncated: header of 4294967307 bytes but the file has only 14"},
		{"nonewline.npy", append([]byte("\x93NUMPY\x01\x00\x06\x00"), "{}    "...),
			"malformed .npy header: no terminating newline"},
		// npyio v0.14.0 panics on these (slice bounds out of range).
		{"keyorder.npy", npyFileDict(1, "{'fortran_order': False, 'descr': '<f4', 'shape': (2, 3), }", f4),
			"malformed .npy header: unparsable header dictionary"},
		{"shortshape.npy", npyFileDict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': }", f4),
			"malformed .npy header: unparsable header dictionary"},
		{"nodict.npy", npyFileDict(1, "hello", f4),
			"malformed .npy header: invalid dictionary format"},
		{"badorder.npy", npyFileDict(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3), }", f4),
			"malformed .npy header: invalid 'fortran_order' value (0)"},
		{"py2long.npy", npyFileDict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", f4),
			`malformed .npy header: strconv.Atoi: parsing "2L": invalid syntax`},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, dir, tt.name, tt.file)
			_, err := ReadNpy(path)
			wantErr(t, err, path, tt.want)
			_, err = ReadVectors(path)
			wantErr(t, err, path, tt.want)
		})
	}
}

func TestReadNpyRefusesNumpyFiles(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
np.save(dir + '/1d.npy', np.zeros(100, np.float32))
np.save(dir + '/3d.npy', np.zeros((2, 3, 4), np.float32))
np.save(dir + '/fortran.npy', np.asfortranarray(np.zeros((3, 4), np.float32)))
np.save(dir + '/docs.npy', np.zeros((3, 4), np.int8))
np.save(dir + '/object.npy', np.array([1, 'a'], dtype=object))
np.save(dir + '/ints.npy', np.zeros((3, 4), np.int32))
np.save(dir + '/empty.npy', np.zeros((0, 4), np.float32))
`)
	for name, want := range map[string]string{
		"1d.npy":      "1-D array of shape (100,); want a 2-D (rows, dims) matrix",
		"3d.npy":      "3-D array of shape (2, 3, 4); want a 2-D (rows, dims) matrix",
		"fortran.npy": "Fortran-order arrays are not supported; save with np.ascontiguousarray",
		"docs.npy":    "unsupported dtype int8 (want float32, float16 or float64)",
		"object.npy":  "unsupported dtype object (want float32, float16 or float64)",
		"ints.npy":    "unsupported dtype int32 (want float32, float16 or float64)",
		"empty.npy":   "empty matrix of shape (0, 4); want at least one row and one column",
	} {
		path := filepath.Join(dir, name)
		_, err := ReadNpy(path)
		wantErr(t, err, path, want)
	}
}

func TestReadNpyMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	_, err := ReadNpy(path)
	wantErr(t, err, path, "no such file or directory")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	_, err = ReadVectors(path)
	wantErr(t, err, path, "no such file or directory")
	_, err = ReadIDs(path, 3)
	wantErr(t, err, path, "no such file or directory")
}

// A header may claim any shape; only the file size may decide what is
// allocated.
func TestReadNpyLyingHeaderAllocatesNothing(t *testing.T) {
	dir := t.TempDir()
	files := []string{
		writeTemp(t, dir, "big.npy", npyFile("<f4", "(100000, 100000)", false, make([]byte, 64))),
		writeTemp(t, dir, "bigf2.npy", npyFile("<f2", "(1000000, 10000)", false, make([]byte, 64))),
		writeTemp(t, dir, "hdr.npy", []byte("\x93NUMPY\x02\x00\x00\x00\x00\x40")),
	}
	for _, path := range files {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := ReadNpy(path); err == nil {
			t.Fatalf("%s: no error", path)
		}
		if _, err := ReadIDs(path, 100000); err == nil {
			t.Fatalf("%s: no error from ReadIDs", path)
		}
		runtime.ReadMemStats(&after)
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("%s: allocated %d bytes", path, d)
		}
	}
}

func TestMmapPathEqualsReadPath(t *testing.T) {
	dir := t.TempDir()
	want := randomMatrix(300, 24, 2)
	path := filepath.Join(dir, "m.npy")
	if err := WriteNpy(path, want); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(path)

	defer func(old int64) { mmapThreshold = old }(mmapThreshold)
	mmapThreshold = math.MaxInt64
	read, mapping, err := readNpy(path)
	if err != nil || mapping != nil {
		t.Fatalf("read path: err %v, mapped %v", err, mapping != nil)
	}
	mmapThreshold = int64(len(want.Data)) * 4 // exactly at the threshold maps
	mapped, mapping, err := readNpy(path)
	if err != nil || mapping == nil {
		t.Fatalf("mmap path: err %v, mapped %v", err, mapping != nil)
	}
	defer unix.Munmap(mapping)
	equalMatrix(t, read, want)
	equalMatrix(t, mapped, want)

	// The mapping is private: edits stay in memory.
	mapped.Data[0] = 42
	mapped.Row(299)[23] = -1
	if now, _ := os.ReadFile(path); !bytes.Equal(now, orig) {
		t.Error("an edit to mapped data reached the file")
	}
	if again, _ := ReadNpy(path); again.Data[0] != want.Data[0] {
		t.Error("an edit to mapped data is seen by the next reader")
	}

	// One byte less of data than the threshold reads.
	mmapThreshold = int64(len(want.Data))*4 + 1
	if _, mapping, _ := readNpy(path); mapping != nil {
		t.Error("data below the threshold was mapped")
	}
}

func TestMmapNeedsAlignedData(t *testing.T) {
	// A header of odd length puts the data at an offset that is not a
	// multiple of 4, where a *float32 must not point.
	dict := "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n"
	for (10+len(dict))%4 != 2 {
		dict = " " + dict
	}
	want := le32(1, 2, 3, 4, 5, 6)
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(dict)), 0)
	b = append(append(b, dict...), want...)
	path := writeTemp(t, t.TempDir(), "odd.npy", b)
	defer func(old int64) { mmapThreshold = old }(mmapThreshold)
	mmapThreshold = 0
	m, mapping, err := readNpy(path)
	if err != nil {
		t.Fatal(err)
	}
	if mapping != nil {
		t.Fatal("unaligned data was mapped")
	}
	equalMatrix(t, m, Matrix{Rows: 2, Cols: 3, Data: []float32{1, 2, 3, 4, 5, 6}})
}

// halfReference is IEEE 754 binary16 decoding by the formula, slowly.
func halfReference(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(mant, -24)
	case 0x1f:
		if mant == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+mant/1024, exp-15)
}

func TestHalfToFloat32Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		got, want := halfToFloat32(uint16(h)), halfReference(uint16(h))
		if math.IsNaN(want) {
			b := math.Float32bits(got)
			if !math.IsNaN(float64(got)) || b>>31 != uint32(h>>15) || b&0x7fffff != uint32(h&0x3ff)<<13 {
				t.Fatalf("half %#04x: got %#08x, want a NaN of the same sign and payload", h, b)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("half %#04x: got %v, want %v", h, got, want)
		}
	}
}

func TestFloat16ExhaustiveAgainstNumpy(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
h = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)
np.save(dir + '/h.npy', h)
np.save(dir + '/f.npy', h.astype(np.float32))
`)
	h, err := ReadNpy(filepath.Join(dir, "h.npy"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadNpy(filepath.Join(dir, "f.npy"))
	if err != nil {
		t.Fatal(err)
	}
	equalMatrix(t, h, f)
}

func TestReadNpyFloat64Conversion(t *testing.T) {
	dir := t.TempDir()
	var b []byte
	for _, v := range []float64{1, 1.0 / 3, math.MaxFloat32, -1e-50, math.Inf(-1), 1e39} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	path := writeTemp(t, dir, "big.npy", npyFile("<f8", "(3, 2)", false, b))
	_, err := ReadNpy(path)
	wantErr(t, err, path, "row 2, column 1: float64 value 1e+39 does not fit in float32")

	path = writeTemp(t, dir, "ok.npy", npyFile("<f8", "(2, 2)", false, b[:32]))
	m, err := ReadNpy(path)
	if err != nil {
		t.Fatal(err)
	}
	// -1e-50 underflows to a zero that keeps its sign.
	negZero := float32(math.Copysign(0, -1))
	equalMatrix(t, m, Matrix{Rows: 2, Cols: 2, Data: []float32{1, 1.0 / 3, math.MaxFloat32, negZero}})
	// An infinity in the file is passed on, for CheckFinite to name.
	path = writeTemp(t, dir, "inf.npy", npyFile("<f8", "(1, 1)", false, b[32:40]))
	_, err = ReadVectors(path)
	wantErr(t, err, path, "row 0, column 0 is -Inf")
}

func TestReadIDs(t *testing.T) {
	dir := t.TempDir()
	i64 := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	i32 := func(vs ...int32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
		return b
	}
	good := []struct {
		name string
		file []byte
		want []int64
	}{
		{"i8.npy", npyFile("<i8", "(4,)", false, i64(10, 3, 1<<40, 0)), []int64{10, 3, 1 << 40, 0}},
		{"column.npy", npyFile("<i8", "(4, 1)", false, i64(10, 3, 1<<40, 0)), []int64{10, 3, 1 << 40, 0}},
		{"i4.npy", npyFile("<i4", "(3,)", false, i32(7, 0, math.MaxInt32)), []int64{7, 0, math.MaxInt32}},
		{"u4.npy", npyFile("<u4", "(2,)", false, i32(-1, 5)), []int64{math.MaxUint32, 5}},
		{"u8.npy", npyFile("<u8", "(2,)", false, i64(math.MaxInt64, 5)), []int64{math.MaxInt64, 5}},
		{"be.npy", npyFile(">i8", "(2,)", false, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 9), 1<<33)), []int64{9, 1 << 33}},
		{"empty.npy", npyFile("<i8", "(0,)", false, nil), []int64{}},
	}
	for _, tt := range good {
		path := writeTemp(t, dir, tt.name, tt.file)
		got, err := ReadIDs(path, len(tt.want))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}

	bad := []struct {
		name string
		file []byte
		n    int
		want string
	}{
		{"dup.npy", npyFile("<i8", "(6,)", false, i64(4, 8, 15, 16, 8, 4)), 6,
			"duplicate id 8 at positions 1 and 4"},
		{"dup32.npy", npyFile("<i4", "(3,)", false, i32(0, 0, 0)), 3,
			"duplicate id 0 at positions 0 and 1"},
		{"negative.npy", npyFile("<i8", "(3,)", false, i64(0, 1, -1)), 3,
			"id -1 at position 2 is negative"},
		{"negative32.npy", npyFile("<i4", "(2,)", false, i32(-5, 1)), 2,
			"id -5 at position 0 is negative"},
		{"toobig.npy", npyFile("<u8", "(2,)", false, i64(1, -1)), 2,
			"id 18446744073709551615 at position 1 does not fit in int64"},
		{"short.npy", npyFile("<i8", "(3,)", false, i64(0, 1, 2)), 4,
			"3 ids for 4 vectors"},
		{"long.npy", npyFile("<i8", "(3,)", false, i64(0, 1, 2)), 2,
			"3 ids for 2 vectors"},
		{"float.npy", npyFile("<f4", "(2,)", false, le32(1, 2)), 2,
			"unsupported dtype float32 for ids (want int64, int32, uint32 or uint64)"},
		{"int16.npy", npyFile("<i2", "(2,)", false, make([]byte, 4)), 2,
			"unsupported dtype int16 for ids (want int64, int32, uint32 or uint64)"},
		{"matrix.npy", npyFile("<i8", "(2, 2)", false, i64(1, 2, 3, 4)), 2,
			"ids must have shape (n,) or (n, 1), not (2, 2)"},
		{"truncated.npy", npyFile("<i8", "(3,)", false, i64(0, 1)), 3,
			"truncated: header says 3 int64 (24 bytes) but only 16 data bytes follow"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, dir, tt.name, tt.file)
			_, err := ReadIDs(path, tt.n)
			wantErr(t, err, path, tt.want)
		})
	}
}

func TestReadIDsFromNumpy(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
np.save(dir + '/i64.npy', np.array([3, 1, 2], np.int64))
np.save(dir + '/i32.npy', np.array([[3], [1], [2]], np.int32))
np.save(dir + '/u32.npy', np.array([3, 1, 2], np.uint32))
np.save(dir + '/dup.npy', np.array([3, 1, 2, 9, 1], np.int64))
`)
	for _, name := range []string{"i64.npy", "i32.npy", "u32.npy"} {
		got, err := ReadIDs(filepath.Join(dir, name), 3)
		if err != nil || !slices.Equal(got, []int64{3, 1, 2}) {
			t.Errorf("%s: got %v, %v", name, got, err)
		}
	}
	path := filepath.Join(dir, "dup.npy")
	_, err := ReadIDs(path, 5)
	wantErr(t, err, path, "duplicate id 1 at positions 1 and 4")
}

func TestWriteNpyInt64(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ids.npy")
	if err := WriteNpyInt64(path, 3, 1, []int64{30, 10, 20}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIDs(path, 3)
	if err != nil || !slices.Equal(got, []int64{30, 10, 20}) {
		t.Fatalf("got %v, %v", got, err)
	}
	err = WriteNpyInt64(path, 2, 2, []int64{1})
	wantErr(t, err, path, "matrix is 2x2 but has 1 values")
}

func TestCheckFinite(t *testing.T) {
	m := Matrix{Rows: 3, Cols: 4, Data: make([]float32, 12)}
	if err := CheckFinite(m, "x.npy"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		v    float32
		want string
	}{
		{float32(math.NaN()), "x.npy: row 2, column 1 is NaN"},
		{float32(math.Inf(1)), "x.npy: row 2, column 1 is +Inf"},
		{float32(math.Inf(-1)), "x.npy: row 2, column 1 is -Inf"},
	} {
		m.Data[9] = tt.v
		m.Data[11] = float32(math.NaN()) // later: not the one reported
		if err := CheckFinite(m, "x.npy"); err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %s", err, tt.want)
		}
	}
	m.Data[9], m.Data[11] = math.MaxFloat32, -math.SmallestNonzeroFloat32
	if err := CheckFinite(m, "x.npy"); err != nil {
		t.Errorf("extreme finite values: %v", err)
	}
}

func TestReadVectorsNaNFromNumpy(t *testing.T) {
	dir := t.TempDir()
	runNumpy(t, dir, `
x = np.ones((20, 5), np.float32)
x[17, 3] = np.nan
np.save(dir + '/x.npy', x)
`)
	path := filepath.Join(dir, "x.npy")
	if _, err := ReadNpy(path); err != nil {
		t.Fatalf("ReadNpy checks nothing but the format: %v", err)
	}
	_, err := ReadVectors(path)
	wantErr(t, err, path, "row 17, column 3 is NaN")
}

// npyio's own writer is another dialect: version 2.0 headers, padded to
// no particular boundary (the data of a 2x30 matrix starts at byte 82),
// and only float64 for 2-D matrices.
func TestReadNpyWrittenByNpyio(t *testing.T) {
	dir := t.TempDir()
	for _, cols := range []int{3, 30, 300} {
		want := randomMatrix(2, cols, uint64(cols))
		data := make([]float64, len(want.Data))
		for i, v := range want.Data {
			data[i] = float64(v)
		}
		var buf bytes.Buffer
		if err := npy.Write(&buf, mat.NewDense(want.Rows, want.Cols, data)); err != nil {
			t.Fatal(err)
		}
		path := writeTemp(t, dir, fmt.Sprintf("npyio%d.npy", cols), buf.Bytes())
		got, err := ReadNpy(path)
		if err != nil {
			t.Fatal(err)
		}
		equalMatrix(t, got, want)
	}
}
