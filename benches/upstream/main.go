// Command upstream is a cheap OpenAI-wire upstream that streams, for benches/bench_streams.py: the same
// bytes as benches/stream_upstream.py, from Go, so that at 1,000 streams its pacing does not hang on one
// Python thread's event loop competing with the sidecar for the cores.
//
//	upstream -chunks 100 -interval-ms 50 [-host 127.0.0.1] [-port 0]
//	# prints `stream upstream listening on http://HOST:PORT`
//
// A streamed `POST .../chat/completions` (`"stream": true` in the body) gets N SSE chunks T ms apart, each
// the size of a real OpenAI chunk (a 226-byte JSON object) and sent as one HTTP chunk of a chunked body,
// then a finish event, a usage event and `[DONE]`; a non-streamed one gets benches/fast_upstream.py's
// canned JSON answer; anything else a 404. Connections are kept alive (HTTP/1.1), and the parsing is only
// what is needed (the head's end, content-length, the stream flag), like the Python upstreams'.
//
// Each chunk costs one write system call on the connection (the bytes are prepared once), from the
// connection's goroutine, woken by its own ticker. Streams are paced on a fixed grid (start + k x
// interval), so a late wake-up does not push the next chunks back (stream_upstream.py re-arms its timer
// after each write: its gaps are the interval plus that delay). Most of a chunk's cost is the kernel's
// (the write and the loopback delivery), so this costs about what stream_upstream.py does per chunk
// (~7-8 µs at 1,000 streams x 20/s, loadgen as the client). One shared 1 ms ticker writing every stream
// due in its tick, tried instead of a ticker per stream, cost the same and let one stalled reader hold up
// every stream, so it was not kept.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const chunkJSON = `{"id":"chatcmpl-bench0123456789","object":"chat.completion.chunk","created":1700000000,` +
	`"model":"gpt-bench","system_fingerprint":"fp_bench","choices":[{"index":0,"delta":{"content":" tok%d"},` +
	`"logprobs":null,"finish_reason":null}]}`

const finishJSON = `{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-bench",` +
	`"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`

const usageJSON = `{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-bench",` +
	`"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":100,"total_tokens":109}}`

// answerJSON is benches/fast_upstream.py's ANSWER.
const answerJSON = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello, world!"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`

var (
	head     = []byte("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
	notFound = []byte("HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nnot found")
	jsonResp = []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s",
		len(answerJSON), answerJSON))
	chunks [10][]byte // chunk i of a stream is chunks[i%10]
	opener []byte     // head + chunks[0]: a stream's first write
	tail   []byte     // finish event, usage event, [DONE], end of the chunked body
)

// event frames one SSE event as one HTTP chunk, as stream_upstream.py's _event does.
func event(payload string) []byte {
	data := "data: " + payload + "\n\n"
	return []byte(fmt.Sprintf("%x\r\n%s\r\n", len(data), data))
}

func init() {
	for i := range chunks {
		chunks[i] = event(fmt.Sprintf(chunkJSON, i))
	}
	opener = append(append([]byte{}, head...), chunks[0]...)
	tail = append(append(event(finishJSON), event(usageJSON)...), "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"...)
}

var (
	nChunks  = 100
	interval = 20 * time.Millisecond
)

// stream is one streamed response in progress.
type stream struct {
	conn net.Conn
	sent int
}

// next writes the stream's next chunk (or its tail); false when the stream is over (finished or failed).
func (s *stream) next() bool {
	if s.sent >= nChunks {
		s.conn.Write(tail) //nolint:errcheck // the stream is over either way
		return false
	}
	if _, err := s.conn.Write(chunks[s.sent%10]); err != nil {
		return false
	}
	s.sent++
	return true
}

// serveStream sends a whole streamed response on conn; it returns when the stream is over.
func serveStream(conn net.Conn) {
	s := &stream{conn: conn, sent: 1}
	if _, err := conn.Write(opener); err != nil {
		return
	}
	if interval <= 0 {
		for s.next() {
		}
		return
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for range ticker.C {
		if !s.next() {
			return
		}
	}
}

var errBadRequest = errors.New("bad request")

// readRequest reads one request: whether it is a POST to .../chat/completions, and its body.
func readRequest(r *bufio.Reader) (chat bool, body []byte, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, nil, err
	}
	requestLine := bytes.ToLower(line)
	chat = bytes.HasPrefix(requestLine, []byte("post ")) && bytes.Contains(requestLine, []byte("/chat/completions"))
	length := 0
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return false, nil, err
		}
		if len(line) <= 2 { // the blank line ending the head
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("content-length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || length < 0 {
				return false, nil, errBadRequest
			}
		}
	}
	body = make([]byte, length)
	_, err = io.ReadFull(r, body)
	return chat, body, err
}

func isStream(body []byte) bool {
	return bytes.Contains(bytes.ReplaceAll(body, []byte(" "), nil), []byte(`"stream":true`))
}

func serveConn(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 8192)
	for {
		chat, body, err := readRequest(r)
		if err != nil {
			return
		}
		switch {
		case !chat:
			_, err = conn.Write(notFound)
		case isStream(body):
			serveStream(conn)
		default:
			_, err = conn.Write(jsonResp)
		}
		if err != nil {
			return
		}
	}
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: any free port)")
	flag.IntVar(&nChunks, "chunks", 100, "chunks per streamed answer")
	intervalMs := flag.Float64("interval-ms", 20, "milliseconds between a stream's chunks (0: back to back)")
	flag.Parse()
	if nChunks < 1 {
		fmt.Fprintln(os.Stderr, "upstream: -chunks must be at least 1")
		os.Exit(2)
	}
	if *intervalMs < 0 {
		fmt.Fprintln(os.Stderr, "upstream: -interval-ms must not be negative")
		os.Exit(2)
	}
	interval = time.Duration(*intervalMs * float64(time.Millisecond))
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "upstream: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("stream upstream listening on http://%s:%d\n", *host, ln.Addr().(*net.TCPAddr).Port)
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		os.Exit(0)
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go serveConn(conn)
	}
}
