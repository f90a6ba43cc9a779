package dms

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/opendms/dms/orchestrator"
	"github.com/opendms/dms/types"
)

// The nodes that produced each blob a job's result names, so that GetBlob
// finds a result's source without reading every job record: written with
// the job's record (jobStore.SaveJobs), one key per blob and node, so a
// blob many jobs produced (an empty stderr) has as many keys as nodes.
const (
	producerPrefix = "blobsrc/" // blobsrc/<cid>/<node>: the ID of a job whose result it is
	// producersIndexedKey says the job records of earlier versions were
	// indexed too (indexOldProducers).
	producersIndexedKey = "store/producers_indexed"
)

func producerKey(c, node string) string { return producerPrefix + c + "/" + node }

// indexProducers adds to kvs the producer keys of a job's result: none
// until it has one.
func indexProducers(kvs map[string]any, info orchestrator.JobInfo) {
	if info.Node == "" || info.Result == nil {
		return
	}
	for _, c := range resultCIDs(info.Result) {
		kvs[producerKey(c, info.Node)] = info.ID
	}
}

// resultCIDs lists the blobs a result names, as GetBlob spells CIDs.
func resultCIDs(r *types.Result) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		if id, err := cid.Decode(s); err == nil {
			s = id.String()
		}
		out = append(out, s)
	}
	add(r.Stdout)
	add(r.Stderr)
	for _, f := range r.Files {
		add(f)
	}
	return out
}

// producers lists the nodes whose jobs' results name blob c (as
// cid.String spells it).
func (d *DMS) producers(c string) ([]string, error) {
	var nodes []string
	err := d.db.Scan(producerPrefix+c+"/", func(key string, _ []byte) error {
		nodes = append(nodes, key[strings.LastIndexByte(key, '/')+1:])
		return nil
	})
	return nodes, err
}

// indexOldProducers indexes, once, the producers of the results of the
// job records written before the index was: one read of every job record,
// the first time a node of this version starts.
func (d *DMS) indexOldProducers() error {
	var done bool
	if ok, err := d.db.Lookup(producersIndexedKey, &done); err != nil || ok {
		return err
	}
	kvs := map[string]any{}
	err := d.db.Scan(jobPrefix, func(key string, v []byte) error {
		var info orchestrator.JobInfo
		if err := json.Unmarshal(v, &info); err != nil {
			d.log.Warn("job record left out of the index of producers: unreadable", "key", key, "err", err)
			return nil
		}
		indexProducers(kvs, info)
		if len(kvs) >= 10_000 {
			err := d.db.PutAll(kvs)
			clear(kvs)
			return err
		}
		return nil
	})
	if err == nil {
		err = d.db.PutAll(kvs)
	}
	if err == nil {
		err = d.db.Put(producersIndexedKey, true) // once the index is written
	}
	if err != nil {
		return fmt.Errorf("dms: indexing the producers of results: %w", err)
	}
	return nil
}
