package thingspacesim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// maxDeliveryLog bounds the /admin/callbacks log; the oldest entries go
// first.
const maxDeliveryLog = 100_000

// DeliveryLogEntry is one line of the callback delivery log.
type DeliveryLogEntry struct {
	RequestID  string `json:"request_id"`
	ICCID      string `json:"iccid"`
	Account    string `json:"account"`
	Attempt    int    `json:"attempt"`               // callbackCount of the attempt (0 when never attempted)
	HTTPStatus int    `json:"http_status,omitempty"` // listener's answer, 0 when none
	Error      string `json:"error,omitempty"`       // transport error, if any
	// Outcome: delivered | failed (will retry) | abandoned | dropped |
	// no_listener.
	Outcome   string    `json:"outcome"`
	Duplicate bool      `json:"duplicate,omitempty"` // the extra copy of a duplicated callback
	Time      time.Time `json:"time"`
}

// Delivery outcomes in the log.
const (
	OutcomeDelivered  = "delivered"
	OutcomeFailed     = "failed"
	OutcomeAbandoned  = "abandoned"
	OutcomeDropped    = "dropped"
	OutcomeNoListener = "no_listener"
)

// delivery is one device callback on its way to the listener.
type delivery struct {
	account   string
	iccid     string
	msg       callbackMessage // without credentials and callbackCount
	attempt   int             // 1-based number of the next attempt
	duplicate bool
}

// deliveryQueue is a FIFO: without ReorderCallbacks, callbacks are
// attempted in completion order.
type deliveryQueue struct {
	items []*delivery
	head  int
}

func (q *deliveryQueue) push(d *delivery) { q.items = append(q.items, d) }
func (q *deliveryQueue) empty() bool      { return q.head == len(q.items) }
func (q *deliveryQueue) pop() *delivery {
	d := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) { // reuse the backing array once drained
		q.items, q.head = q.items[:0], 0
	}
	return d
}

// dispatchLocked hands a device callback to delivery, applying the
// callback faults: drop (never attempted), duplicate (a second, independent
// copy) and late (first attempt delayed).
func (s *Simulator) dispatchLocked(account, iccid string, msg callbackMessage, now time.Time) {
	msg.MaxCallbackThreshold = s.cfg.CallbackMaxAttempts
	if s.rng.Chance(s.faults.DropCallbackRate) {
		s.stats.callbacksDropped++
		s.logDeliveryLocked(
			DeliveryLogEntry{
				RequestID: msg.RequestID,
				ICCID:     iccid,
				Account:   account,
				Outcome:   OutcomeDropped,
				Time:      now,
			},
		)
		return
	}
	jobs := []*delivery{{account: account, iccid: iccid, msg: msg, attempt: 1}}
	if s.rng.Chance(s.faults.DuplicateCallbackRate) {
		s.stats.callbacksDuplicated++
		jobs = append(jobs, &delivery{account: account, iccid: iccid, msg: msg, attempt: 1, duplicate: true})
	}
	if s.faults.LateCallbackDelay > 0 && s.rng.Chance(s.faults.LateCallbackRate) {
		s.stats.callbacksLate++
		s.scheduleLocked(now.Add(s.faults.LateCallbackDelay), func(time.Time) {
			for _, j := range jobs {
				s.enqueueLocked(j)
			}
		})
		return
	}
	for _, j := range jobs {
		s.enqueueLocked(j)
	}
}

func (s *Simulator) enqueueLocked(d *delivery) {
	if s.closed {
		return
	}
	s.queue.push(d)
	s.queueCond.Signal()
}

// deliveryWorker sends queued callbacks until Close.
func (s *Simulator) deliveryWorker() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		for s.queue.empty() && !s.closed {
			s.queueCond.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		job := s.queue.pop()
		reg, ok := s.listeners[listenerKey{job.account, CarrierService}]
		if !ok {
			// Looked up at each attempt: a listener removed between
			// retries stops the retries.
			s.stats.callbacksDropped++
			s.logDeliveryLocked(DeliveryLogEntry{RequestID: job.msg.RequestID, ICCID: job.iccid, Account: job.account,
				Attempt: job.attempt, Outcome: OutcomeNoListener, Duplicate: job.duplicate, Time: time.Now()})
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		status, err := s.post(reg, job)
		s.finishAttempt(job, status, err)
	}
}

// post sends one attempt; the listener's credentials travel in the body,
// as ThingSpace does (S-cbabout).
func (s *Simulator) post(reg callbackRegistration, job *delivery) (int, error) {
	msg := job.msg
	msg.Username, msg.Password = reg.Username, reg.Password
	msg.CallbackCount = job.attempt
	body, err := json.Marshal(msg)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallbackHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, reg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// finishAttempt records an attempt and schedules the retry of a failed one
// (non-2xx or transport error) until CallbackMaxAttempts.
func (s *Simulator) finishAttempt(job *delivery, status int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return // the error is Close's cancellation, not the listener's fault
	}
	now := time.Now()
	entry := DeliveryLogEntry{RequestID: job.msg.RequestID, ICCID: job.iccid, Account: job.account,
		Attempt: job.attempt, HTTPStatus: status, Duplicate: job.duplicate, Time: now}
	if err != nil {
		entry.Error = err.Error()
	}
	if err == nil && status >= 200 && status < 300 {
		s.stats.callbacksDelivered++
		entry.Outcome = OutcomeDelivered
		s.logDeliveryLocked(entry)
		return
	}
	s.stats.callbackAttemptsFailed++
	if job.attempt >= s.cfg.CallbackMaxAttempts {
		entry.Outcome = OutcomeAbandoned // ThingSpace archives it for 30 days
		s.logDeliveryLocked(entry)
		s.log.Debug("callback abandoned", "requestId", job.msg.RequestID, "iccid", job.iccid, "attempts", job.attempt)
		return
	}
	entry.Outcome = OutcomeFailed
	s.logDeliveryLocked(entry)
	s.scheduleLocked(now.Add(s.cfg.CallbackRetryInterval), func(time.Time) {
		job.attempt++
		s.enqueueLocked(job)
	})
}

func (s *Simulator) logDeliveryLocked(e DeliveryLogEntry) {
	if len(s.cbLog) >= maxDeliveryLog {
		n := copy(s.cbLog, s.cbLog[maxDeliveryLog/10:])
		clear(s.cbLog[n:])
		s.cbLog = s.cbLog[:n]
	}
	s.cbLog = append(s.cbLog, e)
}

// DeliveryLog returns a copy of the callback delivery log, oldest first.
func (s *Simulator) DeliveryLog() []DeliveryLogEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DeliveryLogEntry(nil), s.cbLog...)
}
