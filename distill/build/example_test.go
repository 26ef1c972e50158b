package build_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/distillvq/distillvq/distill/build"
	"github.com/distillvq/distillvq/distill/eval"
	"github.com/distillvq/distillvq/faissio"
)

// embeddings stands for a program's own vectors: the first 10,000 words of
// the embedded GloVe set, as [][]float32.
func embeddings() [][]float32 {
	m, err := faissio.ReadVectors(gloveDocs)
	if err != nil {
		log.Fatal(err)
	}
	rows := make([][]float32, 10000)
	for i := range rows {
		rows[i] = m.Row(i)
	}
	return rows
}

// A distilled IVFPQ index from a program's own vectors, written as a FAISS
// file that Python's faiss.read_index loads.
func Example() {
	ctx := context.Background()
	path := filepath.Join(os.TempDir(), "distillvq-example.faiss")
	index, report, err := build.Run(ctx, faissio.RowsSource(embeddings()), build.Options{})
	if err == nil {
		err = faissio.WriteIVFFile(ctx, path, index, nil)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s-trained %s, nlist %d, M %d: %d vectors of d=%d\n",
		report.Train, report.Index, report.Nlist, report.M, report.N, report.D)
	// Output: distill-trained ivfpq, nlist 256, M 25: 10000 vectors of d=100
}

// An OPQ+IVFPQ index: FAISS's OPQ rotation in front, the IVF centroids and
// PQ codebooks trained (here by our k-means) in the rotated space, written
// as the IndexPreTransform FAISS builds for "OPQ10,IVF32,PQ10x6".
func Example_opq() {
	ctx := context.Background()
	docs, err := faissio.MatrixFromRows(embeddings()[:4000])
	if err != nil {
		log.Fatal(err)
	}
	// FAISS's OPQ training costs in proportion to its sample: TrainSize
	// caps it (and the k-means sample) at 2,048 of the 4,000 documents.
	opts := build.Options{OPQ: true, Train: build.KMeans, Nlist: 32, M: 10, Nbits: 6, TrainSize: 2048}
	index, _, err := build.Run(ctx, faissio.MatrixSource(docs), opts)
	if err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(os.TempDir(), "distillvq-example-opq.faiss")
	if err := faissio.WriteIVFFile(ctx, path, index, nil); err != nil {
		log.Fatal(err)
	}
	written, err := faissio.ReadIndexFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d vectors, rotation orthonormal: %v\n", faissio.ClassName(written), len(index.Lists),
		faissio.OrthonormalityError(index.Rotation, index.D) < 1e-5)
	// Output: IndexPreTransform, 4000 vectors, rotation orthonormal: true
}

// Two indexes of the same shape, one trained by FAISS-style k-means and
// one distilled, measured by recall against exact search at several
// nprobe (FAISS does the searching).
func Example_evaluate() {
	ctx := context.Background()
	docs, err := faissio.OpenSource(gloveDocs)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "distillvq-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var paths []string
	for _, trainer := range []build.Trainer{build.KMeans, build.Distill} {
		index, _, err := build.Run(ctx, docs, build.Options{Train: trainer, Nlist: 128, M: 20})
		if err != nil {
			log.Fatal(err)
		}
		path := filepath.Join(dir, trainer.String()+".faiss")
		if err := faissio.WriteIVFFile(ctx, path, index, nil); err != nil {
			log.Fatal(err)
		}
		paths = append(paths, path)
	}
	report, err := eval.Run(ctx, eval.Options{Docs: gloveDocs, Queries: gloveQ, Indexes: paths,
		Ks: []int{10}, Nprobes: []int{4, 16, 64}, NoCache: true})
	if err != nil {
		log.Fatal(err)
	}
	kmeans, distilled := report.Indexes[0], report.Indexes[1]
	for i, p := range distilled.Points {
		fmt.Printf("nprobe %d: distilled R10@10 above k-means: %v\n", p.Nprobe, p.KRecall[10] > kmeans.Points[i].KRecall[10])
	}
	// Output:
	// nprobe 4: distilled R10@10 above k-means: true
	// nprobe 16: distilled R10@10 above k-means: true
	// nprobe 64: distilled R10@10 above k-means: true
}
