package faissio

import (
	"encoding/binary"
	"testing"
)

// TestCheckIDs checks CheckIDs' messages, and that ReadIDs gives the same
// ones after the path for the same ids in a file.
func TestCheckIDs(t *testing.T) {
	dup := make([]int64, 20000)
	for i := range dup {
		dup[i] = int64(i)
	}
	dup[19999] = 0
	for _, c := range []struct {
		ids  []int64
		n    int
		want string
	}{
		{[]int64{1, 2, 3}, 20000, "3 ids for 20000 vectors"},
		{[]int64{1, 2, 3}, 2, "3 ids for 2 vectors"},
		{nil, 1, "0 ids for 1 vectors"},
		{dup, 20000, "duplicate id 0 at positions 0 and 19999"},
		{[]int64{-5, 1}, 2, "id -5 at position 0 is negative"},
		{[]int64{4, 8, 15, 16, 8, 4}, 6, "duplicate id 8 at positions 1 and 4"},
		{[]int64{3, 3, -1}, 3, "id -1 at position 2 is negative"}, // negatives first
	} {
		err := CheckIDs(c.ids, c.n)
		if err == nil || err.Error() != c.want {
			t.Errorf("CheckIDs(%d ids, %d): %v, want %s", len(c.ids), c.n, err, c.want)
		}
		var b []byte
		for _, id := range c.ids {
			b = binary.LittleEndian.AppendUint64(b, uint64(id))
		}
		path := writeTemp(t, t.TempDir(), "ids.npy", npyFile("<i8", shapeString([]int{len(c.ids)}), false, b))
		_, err = ReadIDs(path, c.n)
		if err == nil || err.Error() != path+": "+c.want {
			t.Errorf("ReadIDs of %d ids for %d: %v, want %s", len(c.ids), c.n, err, c.want)
		}
	}
	for _, ids := range [][]int64{nil, {0}, {7, 1 << 62, 3}} {
		if err := CheckIDs(ids, len(ids)); err != nil {
			t.Errorf("CheckIDs(%v): %v", ids, err)
		}
	}
}
