package dms

import (
	"context"
	"fmt"
	"time"

	"github.com/opendms/dms/dms/api"
	"github.com/opendms/dms/node"
	"github.com/opendms/dms/types"
)

// buildRecord makes the node's capability record from the stored hardware
// and benchmark (measuring them if the database has none), the offer and the
// energy source, and signs it. Callers hold d.mu.
func (d *DMS) buildRecord(ctx context.Context) error {
	var hw types.Hardware
	var bench types.Benchmark
	okHW, err := d.db.Lookup(hardwareKey, &hw)
	if err != nil {
		return err
	}
	okBench, err := d.db.Lookup(benchmarkKey, &bench)
	if err != nil {
		return err
	}
	if !okHW || !okBench {
		if hw, bench, err = measure(ctx, d.home, d.db, 0); err != nil {
			return err
		}
	}
	energy, err := node.ReadEnergy(ctx, d.conf.Offer.Energy)
	if err != nil {
		return err
	}
	return d.setRecord(d.conf.Offer, hw, bench, energy)
}

// setRecord rebuilds and re-signs the capability record. Callers hold d.mu.
func (d *DMS) setRecord(offer node.Offer, hw types.Hardware, bench types.Benchmark, energy types.Energy) error {
	rec, err := capabilityRecord(d.key, offer, hw, bench, energy, d.executors, d.opts.clock())
	if err != nil {
		return err
	}
	id, signed, err := signedID(d.key, d.uuid, rec, d.opts.clock())
	if err != nil {
		return err
	}
	d.record, d.id, d.signedRecord = rec, id, signed
	return nil
}

// applyRecord hands a new record to the running Node and republishes it.
// Callers hold d.mu.
func (d *DMS) applyRecord(ctx context.Context) error {
	if d.host != nil {
		d.host.SetComputeCPU(d.record.Offered.CPU)
	}
	if d.node != nil {
		if err := d.node.SetRecord(ctx, d.record); err != nil {
			return err
		}
	}
	d.goPublishRecord()
	return nil
}

// goPublishRecord stores the signed record as a blob, so any peer can fetch
// it by the CID in the NodeID, and announces it in the DHT.
func (d *DMS) goPublishRecord() {
	c := d.id.CapabilityCID
	if _, err := d.blobs.Put(d.signedRecord); err != nil {
		d.log.Error("storing capability record", "err", err)
		return
	}
	d.recordCID.Store(c)
	d.goDo(func(ctx context.Context) {
		if err := d.host.Provide(ctx, c); err != nil {
			d.log.Debug("announcing capability record", "cid", c, "err", err)
		}
	})
}

// Reload re-reads the offer (share, price, labels, energy) from the config
// file and applies it to the running node. Locks and allocations keep what
// they hold. The idle section is read at start only: a change to it is
// logged and left for the next start.
func (d *DMS) Reload(ctx context.Context) error {
	conf, err := LoadConfig(d.home)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.started {
		return ErrNotStarted
	}
	energy, err := node.ReadEnergy(ctx, conf.Offer.Energy)
	if err != nil {
		return err
	}
	if err := d.setRecord(conf.Offer, d.record.Hardware, d.record.Benchmark, energy); err != nil {
		return err
	}
	if conf.Offer.Idle != d.conf.Offer.Idle {
		d.log.Warn("offer.idle changed: it applies at the next start", "running", d.conf.Offer.Idle, "file", conf.Offer.Idle)
		conf.Offer.Idle = d.conf.Offer.Idle
	}
	d.conf.Offer = conf.Offer
	return d.applyRecord(ctx)
}

// Benchmark re-runs the capability benchmark, stores it and republishes the
// node's record.
func (d *DMS) Benchmark(ctx context.Context) (api.NodeInfo, error) {
	hw, bench, err := measure(ctx, d.home, d.db, 0)
	if err != nil {
		return api.NodeInfo{}, err
	}
	d.mu.Lock()
	err = d.setRecord(d.conf.Offer, hw, bench, d.record.Energy)
	if err == nil && d.started {
		err = d.applyRecord(ctx)
	}
	d.mu.Unlock()
	if err != nil {
		return api.NodeInfo{}, err
	}
	return d.Node(ctx)
}

// goRefreshEnergy re-reads the energy file or command every refresh
// interval, when the offer names one.
func (d *DMS) goRefreshEnergy() {
	e := d.conf.Offer.Energy
	if e.File == "" && e.Command == "" {
		return
	}
	every, err := e.RefreshInterval()
	if err != nil {
		d.log.Error("energy refresh", "err", err)
		return
	}
	d.goEvery(every, "reading energy source", d.refreshEnergy)
}

// goEvery calls fn every interval until Close, logging its errors as what.
func (d *DMS) goEvery(every time.Duration, what string, fn func(ctx context.Context) error) {
	d.goDo(func(ctx context.Context) {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := fn(ctx); err != nil {
					d.log.Warn(what, "err", err)
				}
			}
		}
	})
}

func (d *DMS) refreshEnergy(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	energy, err := node.ReadEnergy(ctx, d.conf.Offer.Energy)
	if err != nil {
		return err
	}
	if energy == d.record.Energy {
		return nil
	}
	if err := d.setRecord(d.conf.Offer, d.record.Hardware, d.record.Benchmark, energy); err != nil {
		return fmt.Errorf("dms: energy changed: %w", err)
	}
	return d.applyRecord(ctx)
}
