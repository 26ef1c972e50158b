package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/distillvq/distillvq/faissio"
)

// TestKMeansMatchesFAISSRecall trains the same IVFPQ and IVFFlat indexes
// with our k-means and with FAISS's own training and checks that ours
// reaches FAISS's Recall@10 against exact search (within 0.02) at every
// nprobe, in both metrics, on real data. One seed's recall moves by about
// ±0.015 from another's, so each trainer's recall is the mean over seeds.
func TestKMeansMatchesFAISSRecall(t *testing.T) {
	type dataset struct {
		name, docs, queries string
		nlist, m            int
	}
	sets := []dataset{{"glove20k", gloveDocs, gloveQ, 128, 20}}
	if haveSift() {
		sets = append(sets, dataset{"siftsmall", siftDir + "/siftsmall_base.fvecs", siftDir + "/siftsmall_query.fvecs", 64, 16})
	} else {
		t.Log("siftsmall not found beside the checkout: checking the embedded GloVe set only")
	}
	nprobes := []int{1, 4, 16}
	const seeds = 3
	for _, ds := range sets {
		for _, metric := range []faissio.Metric{faissio.InnerProduct, faissio.L2} {
			for _, kind := range []string{"ivfpq", "ivfflat"} {
				name := fmt.Sprintf("%s/%s/%s", ds.name, kind, metric)
				t.Run(name, func(t *testing.T) {
					dir := t.TempDir()
					mean := map[string][]float64{}
					for _, trainer := range []string{"kmeans", "faiss"} {
						var paths []string
						for seed := uint64(1); seed <= seeds; seed++ {
							o := BuildOptions{Docs: ds.docs, Index: kind, Metric: metric, Nlist: ds.nlist, Nbits: 8,
								Train: trainer, Niter: 25, Seed: seed, Output: filepath.Join(dir, fmt.Sprintf("%s-%d.faiss", trainer, seed))}
							if kind == "ivfpq" {
								o.M = ds.m
							}
							if _, err := Build(context.Background(), o, nil); err != nil {
								t.Fatalf("%s build: %v", trainer, err)
							}
							paths = append(paths, o.Output)
						}
						rep, err := Eval(context.Background(), EvalOptions{Docs: ds.docs, Queries: ds.queries, Ks: []int{10}, Nprobes: nprobes,
							Indexes: paths, NoCache: true}, io.Discard, nil)
						if err != nil {
							t.Fatal(err)
						}
						mean[trainer] = make([]float64, len(nprobes))
						for _, ir := range rep.Indexes {
							for i, p := range ir.Points {
								mean[trainer][i] += p.KRecall[10] / seeds
							}
						}
					}
					for i, np := range nprobes {
						ours, theirs := mean["kmeans"][i], mean["faiss"][i]
						t.Logf("nprobe %2d: mean R10@10 kmeans %.4f faiss %.4f", np, ours, theirs)
						if ours < theirs-0.02 {
							t.Errorf("nprobe %d: our k-means recall %.4f is more than 0.02 below FAISS's %.4f", np, ours, theirs)
						}
					}
				})
			}
		}
	}
}
