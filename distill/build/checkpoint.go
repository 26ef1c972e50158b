package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/distillvq/distillvq/distill"
	"github.com/distillvq/distillvq/faissio"
)

// A checkpoint folder holds the trained parameters of a build in progress,
// one file per finished stage, so that a build stopped by a signal, a crash
// or a time limit can resume (build --resume) where it stopped and end with
// the same index, byte for byte, as one that never stopped:
//
//	checkpoint.json  what the folder belongs to (a key over the inputs'
//	                 bytes and every training option) and its latest stage
//	kmeans.ckpt      the k-means model (and OPQ rotation) training starts from
//	distill.ckpt     the distillation's state after its latest epoch
//
// Each .ckpt file is "DVQCKPT1", the CRC-32 (IEEE) of the rest, then a gob
// stream; every file is written atomically, so an interruption leaves the
// previous stage intact.
const (
	checkpointMeta    = "checkpoint.json"
	checkpointKMeans  = "kmeans.ckpt"
	checkpointDistill = "distill.ckpt"
	checkpointMagic   = "DVQCKPT1"
	// checkpointVersion changes whenever training would give other results
	// from the same inputs, so an older folder is not resumed.
	checkpointVersion = "distillvq checkpoint 1"
)

// kmeansState is the k-means stage: the model distillation starts from (or
// the final model of a k-means build) and the OPQ rotation, if any.
type kmeansState struct {
	Model    *distill.Model
	Rotation []float32
}

// checkpointInfo is checkpoint.json.
type checkpointInfo struct {
	Version string    `json:"version"`
	Key     string    `json:"key"`
	Stage   string    `json:"stage"`
	Written time.Time `json:"written"`
}

// checkpoint is an open checkpoint folder.
type checkpoint struct {
	dir string
	key string
	// kmeans and distill are what --resume found there, or nil.
	kmeans  *kmeansState
	distill *distill.DistillState
}

// checkpointKey identifies everything a build's training depends on: the
// documents (their fingerprint: each file's path, size, modification time
// and header, and sampled blocks of its data; see faissio.Source's
// Fingerprint), the training queries and labels, the training options and
// the number of documents the memory plan lets it learn from. Computing it
// reads a few MiB, however large the collection.
func checkpointKey(src *faissio.Source, o Options, cfg distill.Config, qrels [][]int32, trainRows int) (string, error) {
	h := sha256.New()
	io.WriteString(h, checkpointVersion)
	if err := src.Fingerprint(h); err != nil {
		return "", err
	}
	hashMatrix(h, o.Queries)
	for _, rows := range qrels {
		binary.Write(h, binary.LittleEndian, int64(len(rows)))
		binary.Write(h, binary.LittleEndian, rows)
	}
	dc := o.Distill
	dc.Progress, dc.Checkpoint, dc.Resume = nil, nil, nil
	opqNiter := 0
	if o.OPQ {
		opqNiter = o.OPQNiter
	}
	opts, err := json.Marshal(struct {
		Index       Kind                  `json:"index"`
		Train       Trainer               `json:"train"`
		ExportLists ExportLists           `json:"export_lists"`
		Metric      faissio.Metric        `json:"metric"`
		Nlist       int                   `json:"nlist"`
		M           int                   `json:"m"`
		Nbits       int                   `json:"nbits"`
		TrainSize   int                   `json:"train_size"`
		Niter       int                   `json:"niter"`
		Seed        uint64                `json:"seed"`
		OPQ         bool                  `json:"opq"`
		OPQRotation OPQRotation           `json:"opq_rotation,omitempty"`
		OPQNiter    int                   `json:"opq_niter,omitempty"`
		TrainRows   int                   `json:"train_rows"`
		Distill     distill.DistillConfig `json:"distill"`
	}{o.Index, o.Train, o.ExportLists, cfg.Metric, cfg.Nlist, cfg.M, cfg.Nbits,
		cfg.TrainSize, cfg.Niter, cfg.Seed, o.OPQ, o.OPQRotation, opqNiter, trainRows, dc})
	if err != nil {
		return "", err
	}
	h.Write(opts)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashMatrix adds a matrix's shape and values to h, the values as they lie
// in memory (little-endian on every host faissio supports), uncopied.
func hashMatrix(h io.Writer, m faissio.Matrix) {
	binary.Write(h, binary.LittleEndian, [2]int64{int64(m.Rows), int64(m.Cols)})
	if len(m.Data) > 0 {
		h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&m.Data[0])), 4*len(m.Data)))
	}
}

// openCheckpoint prepares dir (creating it if needed) for a build whose
// training has the given key. With resume, it loads the stages found there,
// refusing a folder written for other inputs or options; without, it starts
// afresh, replacing any earlier stages as new ones finish.
func openCheckpoint(dir, key string, resume bool) (*checkpoint, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c := &checkpoint{dir: dir, key: key}
	if !resume {
		for _, name := range []string{checkpointKMeans, checkpointDistill} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("checkpoint: %w", err)
			}
		}
		return c, c.writeInfo("started")
	}
	data, err := os.ReadFile(filepath.Join(dir, checkpointMeta))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--resume: %s holds no checkpoint (no %s)", dir, checkpointMeta)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var info checkpointInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", filepath.Join(dir, checkpointMeta), err)
	}
	if info.Version != checkpointVersion || info.Key != key {
		return nil, fmt.Errorf("--resume: the checkpoint in %s was written for other documents, queries or training options (its stage: %s); resume with the same ones, or drop --resume to start afresh", dir, info.Stage)
	}
	var km kmeansState
	switch ok, err := readCheckpointFile(filepath.Join(dir, checkpointKMeans), &km); {
	case err != nil:
		return nil, err
	case ok:
		if km.Model == nil {
			return nil, fmt.Errorf("checkpoint %s: no model", filepath.Join(dir, checkpointKMeans))
		}
		if err := km.Model.Validate(); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", filepath.Join(dir, checkpointKMeans), err)
		}
		c.kmeans = &km
	}
	var ds distill.DistillState
	switch ok, err := readCheckpointFile(filepath.Join(dir, checkpointDistill), &ds); {
	case err != nil:
		return nil, err
	case ok && c.kmeans == nil:
		return nil, fmt.Errorf("checkpoint %s: a distillation state without its k-means model", dir)
	case ok:
		c.distill = &ds
	}
	return c, nil
}

// stage describes what a resumed build skips, for the user.
func (c *checkpoint) stage() string {
	switch {
	case c == nil:
		return ""
	case c.distill != nil:
		return fmt.Sprintf("k-means and %d of %d distillation epochs", c.distill.Epoch, c.distill.Epochs)
	case c.kmeans != nil:
		return "k-means"
	}
	return ""
}

func (c *checkpoint) writeInfo(stage string) error {
	b, err := json.MarshalIndent(checkpointInfo{Version: checkpointVersion, Key: c.key,
		Stage: stage, Written: time.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	return faissio.WriteFileAtomic(filepath.Join(c.dir, checkpointMeta), func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// saveKMeans records the k-means stage.
func (c *checkpoint) saveKMeans(st kmeansState) error {
	if err := writeCheckpointFile(filepath.Join(c.dir, checkpointKMeans), st); err != nil {
		return err
	}
	return c.writeInfo("k-means done")
}

// saveDistill records the distillation's state after an epoch.
func (c *checkpoint) saveDistill(st *distill.DistillState) error {
	if err := writeCheckpointFile(filepath.Join(c.dir, checkpointDistill), st); err != nil {
		return err
	}
	return c.writeInfo(fmt.Sprintf("distillation epoch %d of %d done", st.Epoch, st.Epochs))
}

func writeCheckpointFile(path string, v any) error {
	var body bytes.Buffer
	if err := gob.NewEncoder(&body).Encode(v); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return faissio.WriteFileAtomic(path, func(f *os.File) error {
		var head [len(checkpointMagic) + 4]byte
		copy(head[:], checkpointMagic)
		binary.LittleEndian.PutUint32(head[len(checkpointMagic):], crc32.ChecksumIEEE(body.Bytes()))
		if _, err := f.Write(head[:]); err != nil {
			return err
		}
		_, err := f.Write(body.Bytes())
		return err
	})
}

// readCheckpointFile decodes path into v; it reports false when there is no
// such file.
func readCheckpointFile(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checkpoint: %w", err)
	}
	n := len(checkpointMagic)
	if len(data) < n+4 || string(data[:n]) != checkpointMagic {
		return false, fmt.Errorf("checkpoint %s: not a distillvq checkpoint file", path)
	}
	body := data[n+4:]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[n:]) {
		return false, fmt.Errorf("checkpoint %s: corrupt (checksum mismatch); delete it or drop --resume", path)
	}
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		return false, fmt.Errorf("checkpoint %s: corrupt: %v", path, err)
	}
	return true, nil
}
