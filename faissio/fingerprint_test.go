package faissio

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSampleSpans checks the blocks a fingerprint reads: the whole run when
// small, else 64 blocks of 64 KiB, ascending and disjoint, the first at 0,
// the last ending at the end, evenly spaced, so never more than 4 MiB.
func TestSampleSpans(t *testing.T) {
	const b, k = 64 << 10, 64
	if s := sampleSpans(0); len(s) != 0 {
		t.Errorf("0 bytes: %v", s)
	}
	for _, total := range []int64{1, 1000, b*k - 1, b * k} {
		if s := sampleSpans(total); len(s) != 1 || s[0] != (span{0, total}) {
			t.Errorf("%d bytes: %v, want the whole run", total, s)
		}
	}
	for _, total := range []int64{b*k + 1, b*k + 63, 5 << 20, 1<<30 + 7, 3 << 40, 1 << 62, math.MaxInt64} {
		s := sampleSpans(total)
		if len(s) != k {
			t.Fatalf("%d bytes: %d blocks", total, len(s))
		}
		var sum int64
		for i, sp := range s {
			sum += sp.n
			if sp.n != b {
				t.Fatalf("%d bytes: block %d of %d bytes", total, i, sp.n)
			}
			if i > 0 && sp.off < s[i-1].off+b {
				t.Fatalf("%d bytes: block %d at %d overlaps block %d at %d", total, i, sp.off, i-1, s[i-1].off)
			}
			// Evenly spaced: within a byte of the exact fraction.
			exact := float64(i) * float64(total-b) / (k - 1)
			if d := float64(sp.off) - exact; d > 1+exact*1e-15 || d < -1-exact*1e-15 {
				t.Fatalf("%d bytes: block %d at %d, want about %.0f", total, i, sp.off, exact)
			}
		}
		if s[0].off != 0 || s[k-1].off+b != total {
			t.Errorf("%d bytes: blocks span [%d, %d)", total, s[0].off, s[k-1].off+b)
		}
		if sum > 4<<20 {
			t.Errorf("%d bytes: %d sampled", total, sum)
		}
	}
}

// countingWriter counts what is written to it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }

func sourceFingerprint(t *testing.T, s *Source) [32]byte {
	t.Helper()
	h := sha256.New()
	if err := s.Fingerprint(h); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func filesFingerprint(t *testing.T, paths ...string) [32]byte {
	t.Helper()
	h := sha256.New()
	if err := FingerprintFiles(h, paths...); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// flipByte changes the byte at off of the file at path, keeping its
// modification time, as an in-place edit that restores the time would.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestSourceFingerprint checks a Source of three shards, 6 MiB of data in
// all, against the byte stream the doc comment describes, and which
// changes change the fingerprint.
func TestSourceFingerprint(t *testing.T) {
	dir := t.TempDir()
	const cols = 256 // 1 KiB rows
	var paths []string
	shardRows := []int{2048, 1536, 2560}
	for i, rows := range shardRows {
		path := filepath.Join(dir, "part-"+string(rune('a'+i))+".npy")
		if err := WriteNpy(path, randomMatrix(rows, cols, uint64(i))); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	glob := filepath.Join(dir, "part-*.npy")
	s, err := OpenSource(glob)
	if err != nil {
		t.Fatal(err)
	}

	// The stream, built here from the files.
	var want, data bytes.Buffer
	u64 := func(v uint64) { want.Write(binary.LittleEndian.AppendUint64(nil, v)) }
	str := func(s string) { u64(uint64(len(s))); want.WriteString(s) }
	str("distillvq source fingerprint v1")
	u64(uint64(s.Rows))
	u64(cols)
	u64(3)
	for i, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		off := len(b) - 4*cols*shardRows[i]
		str(path)
		u64(uint64(fi.Size()))
		u64(uint64(fi.ModTime().UnixNano()))
		u64(uint64(off))
		want.Write(b[:off])
		data.Write(b[off:])
	}
	spans := sampleSpans(int64(data.Len()))
	if len(spans) != 64 {
		t.Fatalf("%d bytes of data give %d blocks", data.Len(), len(spans))
	}
	for _, sp := range spans {
		want.Write(data.Bytes()[sp.off : sp.off+sp.n])
	}
	var got bytes.Buffer
	if err := s.Fingerprint(&got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("fingerprint stream of %d bytes, want %d, differing at %d", got.Len(), want.Len(), firstDiff(got.Bytes(), want.Bytes()))
	}
	var count countingWriter
	if err := s.Fingerprint(&count); err != nil {
		t.Fatal(err)
	}
	if count.n > 4<<20+1024 {
		t.Errorf("fingerprint of %d data bytes reads %d", data.Len(), count.n)
	}

	base := sourceFingerprint(t, s)
	if again, _ := OpenSource(glob); sourceFingerprint(t, again) != base {
		t.Error("the same files give another fingerprint")
	}

	// Where a sampled block and an unsampled byte lie in the files: shard
	// 1 holds data [2 MiB, 3.5 MiB).
	shard1Data := func(global int64) int64 { return global - 2048*4*cols + 128 }
	sampled := spans[30].off + 1000
	unsampled := spans[30].off + spans[30].n + 10
	if sampled < 2048*4*cols || unsampled >= (2048+1536)*4*cols || unsampled >= spans[31].off {
		t.Fatalf("block 30 at %d is not inside shard 1", spans[30].off)
	}
	if b, _ := os.ReadFile(paths[1]); len(b) != 128+1536*4*cols {
		t.Fatalf("shard 1 has %d bytes, want a 128-byte header", len(b))
	}

	flipByte(t, paths[1], shard1Data(unsampled))
	if sourceFingerprint(t, s) != base {
		t.Error("an edit outside the sampled blocks that keeps size and time changed the fingerprint")
	}
	flipByte(t, paths[1], shard1Data(sampled))
	if sourceFingerprint(t, s) == base {
		t.Error("an edit inside a sampled block did not change the fingerprint")
	}
	flipByte(t, paths[1], shard1Data(sampled))
	flipByte(t, paths[1], shard1Data(unsampled))
	if sourceFingerprint(t, s) != base {
		t.Fatal("restoring the bytes and time did not restore the fingerprint")
	}

	fi, _ := os.Stat(paths[2])
	if err := os.Chtimes(paths[2], fi.ModTime(), fi.ModTime().Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if sourceFingerprint(t, s) == base {
		t.Error("a new modification time did not change the fingerprint")
	}
	if err := os.Chtimes(paths[2], fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}

	if sourceFingerprint(t, s) != base {
		t.Fatal("fingerprint not restored")
	}

	// Another path to the same file.
	one, err := OpenSource(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	dotted, err := OpenSource(dir + "/./" + filepath.Base(paths[0]))
	if err != nil {
		t.Fatal(err)
	}
	if sourceFingerprint(t, dotted) == sourceFingerprint(t, one) {
		t.Error("another path gave the same fingerprint")
	}

	// A shard one row longer: another size, and another shape.
	if err := WriteNpy(paths[0], randomMatrix(2049, cols, 0)); err != nil {
		t.Fatal(err)
	}
	if s2, err := OpenSource(glob); err != nil || sourceFingerprint(t, s2) == base {
		t.Errorf("a longer shard did not change the fingerprint (%v)", err)
	}
	// A Source opened before the change fails rather than sample the new
	// bytes by the old layout, or gives another fingerprint.
	if h := sha256.New(); s.Fingerprint(h) == nil && [32]byte(h.Sum(nil)) == base {
		t.Error("a stale Source gives the old fingerprint")
	}
}

// TestSourceFingerprintSmall: an .fvecs Source and a small .npy are hashed
// whole, and a Source in memory hashes its values.
func TestSourceFingerprintSmall(t *testing.T) {
	dir := t.TempDir()
	vec := vecsFile(fbits(1, 2, 3), fbits(4, 5, 6))
	path := writeTemp(t, dir, "x.fvecs", vec)
	s, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := s.Fingerprint(&got); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	var want bytes.Buffer
	u64 := func(v uint64) { want.Write(binary.LittleEndian.AppendUint64(nil, v)) }
	str := func(s string) { u64(uint64(len(s))); want.WriteString(s) }
	str("distillvq source fingerprint v1")
	u64(2)
	u64(3)
	u64(1)
	str(path)
	u64(uint64(len(vec)))
	u64(uint64(fi.ModTime().UnixNano()))
	u64(4)
	want.Write(vec[:4])
	want.Write(vec)
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("fvecs fingerprint stream differs at byte %d", firstDiff(got.Bytes(), want.Bytes()))
	}

	m := randomMatrix(10, 4, 3)
	a := sourceFingerprint(t, MatrixSource(m))
	if sourceFingerprint(t, MatrixSource(Matrix{Rows: 10, Cols: 4, Data: append([]float32(nil), m.Data...)})) != a {
		t.Error("equal matrices give different fingerprints")
	}
	if sourceFingerprint(t, MatrixSource(Matrix{Rows: 20, Cols: 2, Data: m.Data})) == a {
		t.Error("another shape of the same values gives the same fingerprint")
	}
	m.Data[37] = math.Nextafter32(m.Data[37], 10)
	if sourceFingerprint(t, MatrixSource(m)) == a {
		t.Error("a changed value did not change the fingerprint")
	}
}

// TestFingerprintFiles checks the rule on files of any kind: headers of
// 64 KiB, blocks over all the files' bytes, size and time.
func TestFingerprintFiles(t *testing.T) {
	dir := t.TempDir()
	small := writeTemp(t, dir, "qrels.tsv", []byte("0\t17\n1\t4\n"))
	bigBytes := make([]byte, 9<<20+123)
	for i := range bigBytes {
		bigBytes[i] = byte(i * 7 >> 3)
	}
	big := writeTemp(t, dir, "ids.npy", bigBytes)

	var got bytes.Buffer
	if err := FingerprintFiles(&got, small, big); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	u64 := func(v uint64) { want.Write(binary.LittleEndian.AppendUint64(nil, v)) }
	str := func(s string) { u64(uint64(len(s))); want.WriteString(s) }
	str("distillvq files fingerprint v1")
	u64(2)
	var all []byte
	for _, path := range []string{small, big} {
		b, _ := os.ReadFile(path)
		fi, _ := os.Stat(path)
		str(path)
		u64(uint64(len(b)))
		u64(uint64(fi.ModTime().UnixNano()))
		head := b[:min(len(b), 64<<10)]
		u64(uint64(len(head)))
		want.Write(head)
		all = append(all, b...)
	}
	for _, sp := range sampleSpans(int64(len(all))) {
		want.Write(all[sp.off : sp.off+sp.n])
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("stream of %d bytes, want %d, differing at %d", got.Len(), want.Len(), firstDiff(got.Bytes(), want.Bytes()))
	}
	if int64(got.Len()) > 4<<20+64<<10*2+1024 {
		t.Errorf("read %d bytes", got.Len())
	}

	base := filesFingerprint(t, small, big)
	if filesFingerprint(t, small, big) != base {
		t.Fatal("not deterministic")
	}
	if filesFingerprint(t, big, small) == base {
		t.Error("another order gives the same fingerprint")
	}
	spans := sampleSpans(int64(len(all)))
	inBig := func(global int64) int64 { return global - int64(len("0\t17\n1\t4\n")) }
	flipByte(t, big, inBig(spans[63].off+spans[63].n-1)) // the very last byte
	if filesFingerprint(t, small, big) == base {
		t.Error("changing the last byte did not change the fingerprint")
	}
	flipByte(t, big, inBig(spans[63].off+spans[63].n-1))
	flipByte(t, big, inBig(spans[20].off-5))
	if filesFingerprint(t, small, big) != base {
		t.Error("an edit between the blocks that keeps size and time changed the fingerprint")
	}

	fi, _ := os.Stat(small)
	if err := os.WriteFile(small, []byte("0\t17\n1\t4\n2\t5\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(small, fi.ModTime(), fi.ModTime())
	if filesFingerprint(t, small, big) == base {
		t.Error("a longer file did not change the fingerprint")
	}

	if err := FingerprintFiles(sha256.New(), filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "missing")+": ") {
		t.Errorf("missing file: %v", err)
	}
	if err := FingerprintFiles(sha256.New(), dir); err == nil || err.Error() != dir+": not a regular file" {
		t.Errorf("directory: %v", err)
	}
}
