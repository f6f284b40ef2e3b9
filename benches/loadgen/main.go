// Command loadgen opens N concurrent streams to a tiergate sidecar, over gRPC (StreamComplete) or its
// OpenAI-compatible HTTP facade (SSE), and measures what the clients see: chunks, errors, and the gaps
// between consecutive chunks of each stream. It costs little CPU per chunk, so on a small machine the
// sidecar, not the load generator, is what is measured. benches/bench_streams.py builds and drives it.
// With -mode unary each "stream" is a loop of gRPC Complete calls, and a request's latency is its "gap".
//
//	loadgen -mode grpc -target 127.0.0.1:50051 -streams 1000 -warmup 3s -window 10s
//	loadgen -mode http -target http://127.0.0.1:8080 -streams 1000 -warmup 3s -window 10s
//
// Streams start over -ramp. After -warmup it prints `mark start <chunks>`; after -window more,
// `mark end <chunks>`, then one JSON line with the window's figures; gaps are counted inside the window
// only. Every line is flushed at once, so the caller can sample the sidecar's CPU at each mark.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tiergatev1 "github.com/tiergate/tiergate/examples/go/gen/tiergate/v1"
)

type result struct {
	Streams      int     `json:"streams"`
	Chunks       int64   `json:"chunks"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error"`
	GapP50Ms     float64 `json:"gap_p50_ms"`
	GapP99Ms     float64 `json:"gap_p99_ms"`
	GapMaxMs     float64 `json:"gap_max_ms"`
	WindowS      float64 `json:"window_s"`
	ChunksPerSec float64 `json:"chunks_per_s"`
}

var (
	chunks   atomic.Int64
	errs     atomic.Int64
	inWindow atomic.Bool
	firstErr atomic.Value
	gapsMu   sync.Mutex
	gaps     []float64
)

func fail(err error) {
	errs.Add(1)
	firstErr.CompareAndSwap(nil, err.Error())
}

// seen records one chunk of a stream; last is that stream's previous arrival.
func seen(last *time.Time, local *[]float64) {
	now := time.Now()
	chunks.Add(1)
	if inWindow.Load() && !last.IsZero() {
		*local = append(*local, float64(now.Sub(*last).Microseconds())/1000.0)
	}
	*last = now
}

func flushGaps(local []float64) {
	gapsMu.Lock()
	gaps = append(gaps, local...)
	gapsMu.Unlock()
}

func runGRPC(ctx context.Context, client tiergatev1.TiergateClient) {
	var last time.Time
	var local []float64
	defer func() { flushGaps(local) }()
	req := &tiergatev1.CompleteRequest{Task: "default", Messages: []*tiergatev1.Message{{Role: "user", Content: "Say hello"}}}
	stream, err := client.StreamComplete(ctx, req)
	if err != nil {
		fail(err)
		return
	}
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		seen(&last, &local)
	}
}

// runUnary sends Complete requests one after another until ctx ends; a request's latency counts as its "gap".
func runUnary(ctx context.Context, client tiergatev1.TiergateClient) {
	var local []float64
	defer func() { flushGaps(local) }()
	req := &tiergatev1.CompleteRequest{Task: "default", Messages: []*tiergatev1.Message{{Role: "user", Content: "Say hello"}}}
	for ctx.Err() == nil {
		began := time.Now()
		_, err := client.Complete(ctx, req)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		chunks.Add(1)
		if inWindow.Load() {
			local = append(local, float64(time.Since(began).Microseconds())/1000.0)
		}
	}
}

var body = []byte(`{"model":"default","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`)

func runHTTP(ctx context.Context, client *http.Client, url string) {
	var last time.Time
	var local []float64
	defer func() { flushGaps(local) }()
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		fail(err)
		return
	}
	req.Header.Set("content-type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		fail(fmt.Errorf("HTTP %d", resp.StatusCode))
		return
	}
	reader := bufio.NewReaderSize(resp.Body, 16384)
	for {
		line, err := reader.ReadSlice('\n')
		if err != nil {
			if err != io.EOF && ctx.Err() == nil {
				fail(err)
			}
			return
		}
		if bytes.HasPrefix(line, []byte("data: ")) {
			if bytes.HasPrefix(line, []byte("data: [DONE]")) {
				return
			}
			if bytes.Contains(line, []byte(`"error"`)) {
				fail(fmt.Errorf("error event: %s", strings.TrimSpace(string(line))))
				return
			}
			seen(&last, &local)
		}
	}
}

func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func main() {
	mode := flag.String("mode", "grpc", "grpc, http or unary (gRPC Complete in a loop per stream)")
	target := flag.String("target", "127.0.0.1:50051", "host:port (grpc) or base URL (http)")
	streams := flag.Int("streams", 100, "concurrent streams")
	ramp := flag.Duration("ramp", 2*time.Second, "start the streams evenly over this long")
	warmup := flag.Duration("warmup", 3*time.Second, "from the first stream's start to the window's start")
	window := flag.Duration("window", 10*time.Second, "how long the measured window lasts")
	connections := flag.Int("connections", 4, "gRPC channels the streams are spread over")
	flag.Parse()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var start func(i int)
	switch *mode {
	case "grpc", "unary":
		clients := make([]tiergatev1.TiergateClient, *connections)
		for i := range clients {
			conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer conn.Close()
			clients[i] = tiergatev1.NewTiergateClient(conn)
		}
		if *mode == "unary" {
			start = func(i int) { runUnary(ctx, clients[i%len(clients)]) }
		} else {
			start = func(i int) { runGRPC(ctx, clients[i%len(clients)]) }
		}
	case "http":
		transport := &http.Transport{
			MaxIdleConnsPerHost: *streams,
			MaxConnsPerHost:     0,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			DisableCompression:  true,
		}
		client := &http.Client{Transport: transport}
		url := strings.TrimRight(*target, "/") + "/v1/chat/completions"
		start = func(i int) { runHTTP(ctx, client, url) }
	default:
		fmt.Fprintln(os.Stderr, "-mode must be grpc, http or unary")
		os.Exit(2)
	}

	began := time.Now()
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start(i)
		}(i)
		if *streams > 1 {
			time.Sleep(*ramp / time.Duration(*streams))
		}
	}
	time.Sleep(time.Until(began.Add(*warmup)))
	inWindow.Store(true)
	atStart := chunks.Load()
	errsAtStart := errs.Load()
	fmt.Printf("mark start %d\n", atStart)
	os.Stdout.Sync()
	time.Sleep(*window)
	atEnd := chunks.Load()
	inWindow.Store(false)
	fmt.Printf("mark end %d\n", atEnd)
	os.Stdout.Sync()
	errsInWindow := errs.Load() - errsAtStart
	cancel()
	wg.Wait()

	sort.Float64s(gaps)
	out := result{
		Streams:      *streams,
		Chunks:       atEnd - atStart,
		Errors:       errsInWindow + errsAtStart,
		GapP50Ms:     percentile(gaps, 0.50),
		GapP99Ms:     percentile(gaps, 0.99),
		WindowS:      window.Seconds(),
		ChunksPerSec: float64(atEnd-atStart) / window.Seconds(),
	}
	if len(gaps) > 0 {
		out.GapMaxMs = gaps[len(gaps)-1]
	}
	if v := firstErr.Load(); v != nil {
		out.FirstError = v.(string)
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}
