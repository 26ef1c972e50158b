// Command distillvq turns dense embeddings into FAISS IVF index files whose
// centroids and codebooks are trained for retrieval. See the README.
package main

import "github.com/distillvq/distillvq/cli"

func main() { cli.Exec(nil) }
