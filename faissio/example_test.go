package faissio_test

import (
	"fmt"

	"github.com/distillvq/distillvq/faissio"
)

// Vectors that come as rows, one slice each, become the one row-major
// matrix the readers return; rows of different lengths are refused.
func ExampleMatrixFromRows() {
	m, err := faissio.MatrixFromRows([][]float32{{1, 2, 3}, {4, 5, 6}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Rows, m.Cols, m.Data)
	fmt.Println(m.Row(1))

	_, err = faissio.MatrixFromRows([][]float32{{1, 2, 3}, {4, 5}})
	fmt.Println(err)
	// Output:
	// 2 3 [1 2 3 4 5 6]
	// [4 5 6]
	// row 1 has 2 values, row 0 has 3
}
