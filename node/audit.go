package node

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// audit is the node's bounded log of locks that ended unused, whose
// records it deletes: AuditPrefix + a 20-digit sequence number, the last
// AuditSize kept. It also keeps epochs monotonic across the deletions:
// before a record goes, node/epoch is raised to the ledger's epoch, so a
// restart never issues an epoch a deleted record had.
type audit struct {
	store Store
	next  uint64 // sequence number of the next entry
	epoch uint64 // the highest epoch of the entries found at open
}

// openAudit finds where the log goes on, and the highest epoch its entries name.
func openAudit(st Store) (*audit, error) {
	a := &audit{store: st}
	err := st.Scan(AuditPrefix, func(key string, v []byte) error {
		seq, err := strconv.ParseUint(strings.TrimPrefix(key, AuditPrefix), 10, 64)
		if err != nil {
			return fmt.Errorf("node: audit key %q: %w", key, err)
		}
		var r Allocation
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("node: decoding audit entry %q: %w", key, err)
		}
		a.next, a.epoch = max(a.next, seq+1), max(a.epoch, r.Epoch)
		return nil
	})
	return a, err
}

func auditKey(seq uint64) string { return fmt.Sprintf("%s%020d", AuditPrefix, seq) }

// discard deletes rec's record and index keys and, in the same write, writes its audit
// entry, raises node/epoch to epoch (the ledger's, at or above rec's) and
// deletes the entry AuditSize back.
func (a *audit) discard(rec Allocation, epoch uint64) error {
	del := append(allocIndexKeys(&rec), rec.Key())
	if a.next >= AuditSize {
		del = append(del, auditKey(a.next-AuditSize))
	}
	put := map[string]any{epochKey: max(epoch, rec.Epoch), auditKey(a.next): rec}
	if err := a.store.Write(put, del); err != nil {
		return err
	}
	a.next++
	return nil
}
