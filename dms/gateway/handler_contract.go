package gateway

// Stand-ins, written to the contracts of parts being built beside this
// one: CallError and GroupBy (gwcore, calls.go and its list helpers).
// Delete each when its real one lands.

// CallError is an error of a call that made a task.
type CallError struct {
	Task string
	Err  error
}

func (e *CallError) Error() string { return e.Err.Error() }
func (e *CallError) Unwrap() error { return e.Err }

// Group is the items whose tag has one value ("" for those without it).
type Group[T any] struct {
	Value string `json:"value"`
	Items []T    `json:"items"`
}

// GroupBy groups items by the value of their tag key, in the order of
// first appearance.
func GroupBy[T any](items []T, tags func(T) map[string]string, key string) []Group[T] {
	var groups []Group[T]
	at := map[string]int{}
	for _, it := range items {
		v := tags(it)[key]
		i, ok := at[v]
		if !ok {
			i = len(groups)
			at[v] = i
			groups = append(groups, Group[T]{Value: v})
		}
		groups[i].Items = append(groups[i].Items, it)
	}
	return groups
}
