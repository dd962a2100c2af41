package change

// Tally counts ended device changes: the processed ones by outcome, the
// failed ones by error code. A running bulk change's progress and the state
// a failed one is resumed from are the same tally, so the workflow adds the
// resumed counts to its own instead of copying them field by field.
type Tally struct {
	Processed    int             `json:"processed"`
	Errors       int             `json:"errors"`
	ByOutcome    map[Outcome]int `json:"byOutcome"`
	ErrorsByCode map[Code]int    `json:"errorsByCode"`
}

// NewTally is an empty tally. Its maps are made, not nil, so that it
// marshals as {} the way progress always has in workflow histories.
func NewTally() Tally {
	return Tally{ByOutcome: map[Outcome]int{}, ErrorsByCode: map[Code]int{}}
}

// AddProcessed counts n device changes processed with the outcome.
func (t *Tally) AddProcessed(outcome Outcome, n int) {
	t.Processed += n
	t.outcomes()[outcome] += n
}

// AddError counts n device changes failed with the code.
func (t *Tally) AddError(code Code, n int) {
	t.Errors += n
	t.codes()[code] += n
}

// Add counts another tally into t. The order its maps are walked in does
// not change the sums, so workflow code may call it.
func (t *Tally) Add(o Tally) {
	t.Processed += o.Processed
	t.Errors += o.Errors
	//workflowcheck:ignore sums do not depend on the order
	for outcome, n := range o.ByOutcome {
		t.outcomes()[outcome] += n
	}
	//workflowcheck:ignore sums do not depend on the order
	for code, n := range o.ErrorsByCode {
		t.codes()[code] += n
	}
}

// outcomes and codes make the maps of a tally decoded from a JSON null.
func (t *Tally) outcomes() map[Outcome]int {
	if t.ByOutcome == nil {
		t.ByOutcome = map[Outcome]int{}
	}
	return t.ByOutcome
}

func (t *Tally) codes() map[Code]int {
	if t.ErrorsByCode == nil {
		t.ErrorsByCode = map[Code]int{}
	}
	return t.ErrorsByCode
}
