package orchestrator

// Observer is told of the moments of a job that metrics count, as the
// loop announces them. Its methods are called from the loop, one at a
// time: they must not block, and must not keep a (the attempt's slices
// are the snapshot's).
type Observer interface {
	// Placed is told of an attempt whose node confirmed: a.PlacedAt
	// minus a.StartedAt is how long the placement took.
	Placed(a Attempt)
	// AttemptEnded is told of an attempt once it has its final Outcome.
	AttemptEnded(a Attempt)
}

// notify tells cfg.Observer what changed from prev, the job's last
// announced snapshot (zero for a new job), to next. It walks the attempts
// only: a job has few.
func (o *Orchestrator) notify(prev, next JobInfo) {
	obs := o.cfg.Observer
	if obs == nil {
		return
	}
	for i, a := range next.Attempts {
		var was Attempt
		if i < len(prev.Attempts) {
			was = prev.Attempts[i]
		}
		if !a.PlacedAt.IsZero() && was.PlacedAt.IsZero() {
			obs.Placed(a)
		}
		if a.Outcome != OutcomeActive && (was.Outcome == OutcomeActive || was.Outcome == "") {
			obs.AttemptEnded(a)
		}
	}
}
