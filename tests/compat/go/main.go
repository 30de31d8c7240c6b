// Command sarama-compat drives a Sluice broker with Sarama (Debian's
// golang-github-shopify-sarama-dev) for `cargo xtask compat`: each subcommand does one
// client action and prints one JSON document on stdout, which
// tests/compat/sarama_scenarios.py asserts on. It builds offline in GOPATH mode
// against /usr/share/gocode (GO111MODULE=off), so it uses only the standard library
// and Sarama.
//
// Subcommands (all take -brokers HOST:PORT and -version, a Kafka version such as
// 2.2.0 or "default" for Sarama's own default):
//
//	produce -topic T -n N -partitions P            SyncProducer, acks=all
//	consume -topic T -group G -expect N -members M  ConsumerGroup(s), roundrobin
//	admin -topic T -group G -partitions P          ClusterAdmin group listing
//	delete-group -group G                          DeleteGroups on the coordinator
//	default-version -topic T -group G              what Sarama's default Version does
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: sarama-compat produce|consume|admin|delete-group|default-version [flags]")
	}
	cmd, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "bootstrap address")
	version := fs.String("version", "default", "Kafka version for Config.Version, or default")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "consumer group")
	n := fs.Int("n", 0, "messages to produce")
	partitions := fs.Int("partitions", 1, "partitions of the topic")
	expect := fs.Int("expect", 0, "messages to consume before stopping")
	members := fs.Int("members", 1, "consumer group members to run")
	retention := fs.Bool("retention", false, "set Consumer.Offsets.Retention (OffsetCommit v2 instead of v1)")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole subcommand")
	prefix := fs.String("prefix", "m", "value prefix of produced messages")
	hold := fs.Bool("hold", false, "consume: once done, print READY and stay in the group until stdin closes")
	if err := fs.Parse(args); err != nil {
		fail(err.Error())
	}
	cfg := sarama.NewConfig()
	if *version != "default" {
		v, err := sarama.ParseKafkaVersion(*version)
		if err != nil {
			fail(err.Error())
		}
		cfg.Version = v
	}
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Net.ReadTimeout = 10 * time.Second
	cfg.Net.WriteTimeout = 10 * time.Second
	addrs := []string{*brokers}
	switch cmd {
	case "produce":
		emit(produce(cfg, addrs, *topic, *n, *partitions, *prefix))
	case "consume":
		emit(consume(cfg, addrs, *topic, *group, *expect, *members, *partitions, *retention, *hold, *timeout))
	case "admin":
		emit(admin(cfg, addrs, *topic, *group, *partitions))
	case "delete-group":
		emit(deleteGroup(cfg, addrs, *group))
	case "default-version":
		emit(defaultVersion(cfg, addrs, *topic, *group))
	default:
		fail("unknown subcommand " + cmd)
	}
}

func emit(v interface{}) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "sarama-compat:", msg)
	os.Exit(2)
}

func must(err error, what string) {
	if err != nil {
		fail(what + ": " + err.Error())
	}
}

// produce sends n messages with a SyncProducer (RequiredAcks=WaitForAll), message i to
// partition i % partitions, half one at a time and half in one SendMessages call.
// Output: {"results": [[partition, offset], ...]} in send order.
func produce(cfg *sarama.Config, addrs []string, topic string, n, partitions int, prefix string) map[string]interface{} {
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer(addrs, cfg)
	must(err, "NewSyncProducer")
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic:     topic,
			Partition: int32(i % partitions),
			Key:       sarama.StringEncoder(fmt.Sprintf("k%d", i)),
			Value:     sarama.StringEncoder(fmt.Sprintf("%s-%d", prefix, i)),
		}
	}
	half := n / 2
	for _, m := range msgs[:half] {
		_, _, err := p.SendMessage(m)
		must(err, "SendMessage")
	}
	must(p.SendMessages(msgs[half:]), "SendMessages")
	results := make([][2]int64, n)
	for i, m := range msgs {
		results[i] = [2]int64{int64(m.Partition), m.Offset}
	}
	return map[string]interface{}{"results": results}
}

type session struct {
	Member     int     `json:"member"`
	MemberID   string  `json:"member_id"`
	Generation int32   `json:"generation"`
	Claims     []int32 `json:"claims"`
}

// tracker is shared by the members' handlers: what each consumed, and their sessions.
type tracker struct {
	mu         sync.Mutex
	messages   [][3]int64 // member, partition, offset
	sessions   []session  // every session, in Setup order
	current    []*session // each member's live session (nil between sessions)
	errors     []string
	partitions int
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.messages)
}

// stable: every member is in a session of one generation, and their claims split
// all partitions between them.
func (t *tracker) stable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[int32]bool{}
	for _, s := range t.current {
		if s == nil || s.Generation != t.current[0].Generation || len(s.Claims) == 0 {
			return false
		}
		for _, p := range s.Claims {
			if seen[p] {
				return false
			}
			seen[p] = true
		}
	}
	return len(seen) == t.partitions
}

type handler struct {
	t      *tracker
	member int
	topic  string
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	claims := append([]int32(nil), s.Claims()[h.topic]...)
	sort.Slice(claims, func(i, j int) bool { return claims[i] < claims[j] })
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	cur := session{Member: h.member, MemberID: s.MemberID(), Generation: s.GenerationID(), Claims: claims}
	h.t.sessions = append(h.t.sessions, cur)
	h.t.current[h.member] = &cur
	return nil
}

func (h *handler) Cleanup(sarama.ConsumerGroupSession) error {
	h.t.mu.Lock()
	defer h.t.mu.Unlock()
	h.t.current[h.member] = nil
	return nil
}

// ConsumeClaim marks every message: the session commits marked offsets every
// CommitInterval and once more when it ends.
func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.t.mu.Lock()
		h.t.messages = append(h.t.messages, [3]int64{int64(h.member), int64(m.Partition), m.Offset})
		h.t.mu.Unlock()
	}
	return nil
}

// consume runs `members` ConsumerGroups (each its own client) in one group with the
// roundrobin strategy and OffsetOldest until `expect` messages have been consumed in
// all and the members share the partitions in one generation, then closes them
// (final commit, LeaveGroup); with -hold it first prints READY and waits for stdin to
// close, so the driver can inspect the live group. Output: messages as [member, partition, offset], every
// session seen, errors reported by Sarama, and whether the deadline passed.
func consume(cfg *sarama.Config, addrs []string, topic, group string, expect, members, partitions int, retention, hold bool, timeout time.Duration) map[string]interface{} {
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	if retention {
		cfg.Consumer.Offsets.Retention = time.Hour
	}
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Strategy = sarama.BalanceStrategyRoundRobin
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 200 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond

	t := &tracker{
		messages:   [][3]int64{},
		sessions:   []session{},
		errors:     []string{},
		current:    make([]*session, members),
		partitions: partitions,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	groups := make([]sarama.ConsumerGroup, members)
	for i := range groups {
		c := *cfg
		c.ClientID = fmt.Sprintf("sarama-member-%d", i)
		g, err := sarama.NewConsumerGroup(addrs, group, &c)
		must(err, "NewConsumerGroup")
		groups[i] = g
		go func() {
			for err := range g.Errors() {
				t.mu.Lock()
				t.errors = append(t.errors, err.Error())
				t.mu.Unlock()
			}
		}()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := &handler{t: t, member: i, topic: topic}
			for ctx.Err() == nil {
				// Consume returns at every rebalance; calling it again rejoins.
				if err := g.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
					t.mu.Lock()
					t.errors = append(t.errors, "Consume: "+err.Error())
					t.mu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(i)
	}
	deadline := time.Now().Add(timeout)
	timedOut := false
	for !(t.count() >= expect && t.stable()) {
		if time.Now().After(deadline) {
			timedOut = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if hold && !timedOut {
		// The driver inspects the live group, then closes our stdin.
		fmt.Println("READY")
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	cancel()
	wg.Wait()
	closeErrs := []string{}
	for _, g := range groups {
		if err := g.Close(); err != nil {
			closeErrs = append(closeErrs, "Close: "+err.Error())
		}
	}
	t.mu.Lock()
	t.errors = append(t.errors, closeErrs...)
	defer t.mu.Unlock()
	return map[string]interface{}{
		"messages":  t.messages,
		"sessions":  t.sessions,
		"errors":    t.errors,
		"timed_out": timedOut,
	}
}

// admin lists and describes groups and the group's committed offsets with
// ClusterAdmin (ListGroups v0, DescribeGroups v0, OffsetFetch v1).
func admin(cfg *sarama.Config, addrs []string, topic, group string, partitions int) map[string]interface{} {
	a, err := sarama.NewClusterAdmin(addrs, cfg)
	must(err, "NewClusterAdmin")
	defer a.Close()
	groups, err := a.ListConsumerGroups()
	must(err, "ListConsumerGroups")
	descs, err := a.DescribeConsumerGroups([]string{group})
	must(err, "DescribeConsumerGroups")
	type member struct {
		ClientID   string             `json:"client_id"`
		ClientHost string             `json:"client_host"`
		Topics     []string           `json:"topics"`
		Assignment map[string][]int32 `json:"assignment"`
	}
	described := []map[string]interface{}{}
	for _, d := range descs {
		ms := []member{}
		for _, m := range d.Members {
			meta, err := m.GetMemberMetadata()
			must(err, "member metadata")
			assignment, err := m.GetMemberAssignment()
			must(err, "member assignment")
			ms = append(ms, member{ClientID: m.ClientId, ClientHost: m.ClientHost, Topics: meta.Topics, Assignment: assignment.Topics})
		}
		described = append(described, map[string]interface{}{
			"group": d.GroupId, "error": int16(d.Err), "state": d.State,
			"protocol_type": d.ProtocolType, "protocol": d.Protocol, "members": ms,
		})
	}
	parts := make([]int32, partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	resp, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	must(err, "ListConsumerGroupOffsets")
	offsets := map[int32]int64{}
	for _, p := range parts {
		b := resp.GetBlock(topic, p)
		if b == nil {
			fail(fmt.Sprintf("no offset block for partition %d", p))
		}
		if b.Err != sarama.ErrNoError {
			fail(fmt.Sprintf("offset fetch error for partition %d: %v", p, b.Err))
		}
		offsets[p] = b.Offset
	}
	client, err := sarama.NewClient(addrs, cfg)
	must(err, "NewClient")
	defer client.Close()
	newest := map[int32]int64{}
	for _, p := range parts {
		o, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		must(err, "GetOffset")
		newest[p] = o
	}
	return map[string]interface{}{"groups": groups, "described": described, "committed": offsets, "newest": newest}
}

// deleteGroup sends DeleteGroups v0 to the group's coordinator (Sarama 1.22's
// ClusterAdmin has no wrapper for it). Output: {"error": code}.
func deleteGroup(cfg *sarama.Config, addrs []string, group string) map[string]interface{} {
	client, err := sarama.NewClient(addrs, cfg)
	must(err, "NewClient")
	defer client.Close()
	coordinator, err := client.Coordinator(group)
	must(err, "Coordinator")
	resp, err := coordinator.DeleteGroups(&sarama.DeleteGroupsRequest{Groups: []string{group}})
	must(err, "DeleteGroups")
	return map[string]interface{}{"error": int16(resp.GroupErrorCodes[group])}
}

// defaultVersion shows what happens with Sarama's default Config.Version
// (V0_8_2_0): a produce (Produce v0, legacy message format) and a ConsumerGroup.
// Output: the two errors (empty when the call succeeded).
func defaultVersion(cfg *sarama.Config, addrs []string, topic, group string) map[string]interface{} {
	out := map[string]interface{}{"version": cfg.Version.String()}
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 1
	cfg.Producer.Retry.Backoff = 100 * time.Millisecond
	start := time.Now()
	p, err := sarama.NewSyncProducer(addrs, cfg)
	if err == nil {
		_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("v0")})
		p.Close()
	}
	out["produce_error"] = errString(err)
	out["produce_secs"] = time.Since(start).Seconds()
	g, err := sarama.NewConsumerGroup(addrs, group, cfg)
	if err == nil {
		g.Close()
	}
	out["group_error"] = errString(err)
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
