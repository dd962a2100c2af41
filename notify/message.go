package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/workflows/api"
)

// message is an event as people read it: a title and a plain-text body,
// with the Web UI link ("" when temporal.ui_url is not set).
type message struct {
	Event
	Title string
	Body  string
	Link  string
}

// UILink is the Temporal Web UI page of a bulk change's workflow, "" when
// base (temporal.ui_url) is "": a guessed address would mislead.
func UILink(base, namespace, bulkChangeID string) string {
	if base == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(base, "/"),
		url.PathEscape(namespace), url.PathEscape(api.BulkChangeWorkflowID(bulkChangeID)))
}

func render(e Event, link string) message {
	m := message{Event: e, Link: link, Title: title(e)}
	var b strings.Builder
	b.WriteString(m.Title + "\n\n")
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-20s %s\n", label+":", value)
		}
	}
	line("Bulk change", e.BulkChangeID)
	line("Tenant", e.Tenant)
	line("Operation", e.Operation)
	line("Account", e.Account)
	line("Summary", e.Summary)
	line("Devices", devices(e))
	if len(e.ErrorsByCode) > 0 {
		b.WriteString("Errors by code:\n")
		for _, c := range e.ErrorsByCode {
			fmt.Fprintf(&b, "  %-30s %s\n", c.Code, thousands(c.Count))
		}
	}
	if e.BillingOwed > 0 {
		line("Billing steps owed", thousands(e.BillingOwed))
	}
	line("Reason", e.Reason)
	line("Web UI", link)
	line("Time", e.At.Format(time.RFC3339))
	line("Event", e.ID)
	m.Body = b.String()
	return m
}

// title is one line saying what happened to which bulk change.
func title(e Event) string {
	var what string
	switch e.Kind {
	case ApprovalNeeded:
		what = "awaits approval"
	case Finished:
		if e.Errors == 0 {
			what = "finished without errors"
		} else {
			what = "finished with " + plural(e.Errors, "error")
		}
	case Failed:
		what = "failed"
	case Stalled:
		what = "stalled"
	case BillingOwed:
		what = "owes " + plural(e.BillingOwed, "billing step")
	}
	t := "Bulk change " + short(e.BulkChangeID) + " " + what
	if e.Summary != "" {
		t += ": " + e.Summary
	} else if e.Operation != "" {
		t += ": " + e.Operation + " " + plural(e.Total, "device")
	}
	return t
}

func devices(e Event) string {
	if e.Total == 0 {
		return ""
	}
	s := fmt.Sprintf("%s: %s processed, %s", thousands(e.Total), thousands(e.Processed), plural(e.Errors, "error"))
	if e.Cancelled > 0 {
		s += ", " + thousands(e.Cancelled) + " cancelled"
	}
	return s
}

// short is a bulk change id's first group, enough to tell bulk changes
// apart in a subject line.
func short(id string) string {
	if head, _, ok := strings.Cut(id, "-"); ok {
		return head
	}
	return id
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return thousands(n) + " " + noun + "s"
}

// thousands writes n with comma separators (10,000).
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// jsonPayload is the json format: the event's fields, its title and
// plain text, and the link.
func jsonPayload(m message) ([]byte, error) {
	return json.Marshal(struct {
		Event
		Title string `json:"title"`
		Text  string `json:"text"`
		Link  string `json:"link,omitempty"`
	}{m.Event, m.Title, m.Body, m.Link})
}

// slackPayload is the slack format: a fallback text and blocks
// (https://api.slack.com/messaging/webhooks).
func slackPayload(m message) ([]byte, error) {
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type block struct {
		Type     string `json:"type"`
		Text     *text  `json:"text,omitempty"`
		Fields   []text `json:"fields,omitempty"`
		Elements []text `json:"elements,omitempty"`
	}
	md := func(s string) text { return text{Type: "mrkdwn", Text: s} }
	blocks := []block{{Type: "section", Text: &text{Type: "mrkdwn", Text: "*" + slackEscape(m.Title) + "*"}}}
	var fields []text
	field := func(label, value string) {
		if value != "" {
			fields = append(fields, md("*"+label+"*\n"+slackEscape(value)))
		}
	}
	field("Tenant", m.Tenant)
	field("Operation", m.Operation)
	field("Account", m.Account)
	field("Devices", devices(m.Event))
	if m.BillingOwed > 0 {
		field("Billing steps owed", thousands(m.BillingOwed))
	}
	if len(fields) > 0 {
		blocks = append(blocks, block{Type: "section", Fields: fields})
	}
	if len(m.ErrorsByCode) > 0 {
		var b strings.Builder
		b.WriteString("*Errors by code*")
		for _, c := range m.ErrorsByCode {
			fmt.Fprintf(&b, "\n`%s` %s", strings.ReplaceAll(slackEscape(c.Code), "`", "'"), thousands(c.Count))
		}
		blocks = append(blocks, block{Type: "section", Text: &text{Type: "mrkdwn", Text: b.String()}})
	}
	if m.Reason != "" {
		blocks = append(blocks, block{Type: "section", Text: &text{Type: "mrkdwn", Text: "*Reason*\n" + slackEscape(m.Reason)}})
	}
	context := []text{md(m.At.Format(time.RFC3339) + " · bulk change " + m.BulkChangeID)}
	if m.Link != "" {
		context = append(context, md("<"+m.Link+"|Open in the Temporal Web UI>"))
	}
	blocks = append(blocks, block{Type: "context", Elements: context})
	return json.Marshal(struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}{m.Title, blocks})
}

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
