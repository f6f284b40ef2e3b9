// Command relay_floor is the smallest honest streaming gateway, for benches/bench_streams.py (--go-floor):
// what relaying one chunk costs on this machine when the relay is compiled, multi-threaded Go with the
// usual libraries (grpc-go, net/http, encoding/json), not what a better tiergate could skip.
//
//	relay_floor -upstream http://127.0.0.1:8000 [-grpc 127.0.0.1:0] [-http 127.0.0.1:0]
//	# prints `serving HTTP on HOST:PORT (...)`, then `serving gRPC on HOST:PORT`, as `tiergate serve` does
//
// Each call, gRPC tiergate.v1.Tiergate/StreamComplete or HTTP POST /v1/chat/completions (stream=true),
// posts a streamed OpenAI chat-completions request to <upstream>/v1/chat/completions (keep-alive client),
// reads the SSE body line by line, decodes each `data:` event's JSON and sends the delta's text on: one
// CompleteChunk per upstream chunk, or one OpenAI-style SSE event re-encoded with encoding/json and flushed.
// At `[DONE]` a last chunk carries finish_reason "stop" (and the usage, if the upstream sent it). It does
// what a gateway must do per chunk (parse, re-encode, one write) and nothing else: no routing, no policy,
// no metrics. Other Tiergate methods are unimplemented.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tiergatev1 "github.com/tiergate/tiergate/examples/go/gen/tiergate/v1"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type usage struct {
	PromptTokens     uint32 `json:"prompt_tokens"`
	CompletionTokens uint32 `json:"completion_tokens"`
	TotalTokens      uint32 `json:"total_tokens"`
}

// upstreamChunk is the part of an OpenAI chat.completion.chunk that the relay reads.
type upstreamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

type relay struct {
	client *http.Client
	url    string // <upstream>/v1/chat/completions
}

// stream relays one streamed completion: emit gets each chunk's text; the result is the finish reason and
// the usage, if the upstream sent them.
func (r *relay) stream(ctx context.Context, messages []message, emit func(text string) error) (string, *usage, error) {
	body, err := json.Marshal(map[string]any{
		"model": "gpt-bench", "messages": messages, "stream": true,
		"stream_options": map[string]bool{"include_usage": true},
	})
	if err != nil {
		return "", nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("authorization", "Bearer sk-bench")
	resp, err := r.client.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("upstream answered HTTP %d", resp.StatusCode)
	}
	finish, used := "stop", (*usage)(nil)
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 0, 16384), 1<<20)
	for lines.Scan() {
		data, ok := bytes.CutPrefix(lines.Bytes(), []byte("data:"))
		if !ok {
			continue // blank lines between events, comments, other fields
		}
		data = bytes.TrimSpace(data)
		if bytes.Equal(data, []byte("[DONE]")) {
			return finish, used, nil
		}
		var chunk upstreamChunk
		if err := json.Unmarshal(data, &chunk); err != nil {
			return "", nil, fmt.Errorf("upstream event: %w", err)
		}
		if chunk.Usage != nil {
			used = chunk.Usage
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		if reason := chunk.Choices[0].FinishReason; reason != nil {
			finish = *reason
		}
		if text := chunk.Choices[0].Delta.Content; text != "" {
			if err := emit(text); err != nil {
				return "", nil, err
			}
		}
	}
	if err := lines.Err(); err != nil {
		return "", nil, err
	}
	return "", nil, errors.New("upstream stream ended before [DONE]")
}

// gateway serves both interfaces; each call relays one upstream stream.
type gateway struct {
	tiergatev1.UnimplementedTiergateServer
	relay *relay
}

func (s *gateway) StreamComplete(req *tiergatev1.CompleteRequest, out grpc.ServerStreamingServer[tiergatev1.CompleteChunk]) error {
	messages := make([]message, len(req.Messages))
	for i, m := range req.Messages {
		messages[i] = message{Role: m.Role, Content: m.Content}
	}
	finish, used, err := s.relay.stream(out.Context(), messages, func(text string) error {
		return out.Send(&tiergatev1.CompleteChunk{Text: text})
	})
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	last := &tiergatev1.CompleteChunk{FinishReason: finish}
	if used != nil {
		last.Usage = &tiergatev1.Usage{InputTokens: used.PromptTokens, OutputTokens: used.CompletionTokens}
	}
	return out.Send(last)
}

// sseChunk is one chat.completion.chunk as the HTTP facade sends it.
type sseChunk struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []sseChoice `json:"choices"`
	Usage   *usage      `json:"usage,omitempty"`
}

type sseChoice struct {
	Index        int               `json:"index"`
	Delta        map[string]string `json:"delta"`
	FinishReason *string           `json:"finish_reason"`
	Logprobs     *struct{}         `json:"logprobs"`
}

func (s *gateway) chatCompletions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string    `json:"model"`
		Messages []message `json:"messages"`
		Stream   bool      `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || !req.Stream {
		http.Error(w, `{"error":{"message":"a JSON body with stream=true is expected"}}`, http.StatusBadRequest)
		return
	}
	flusher := http.NewResponseController(w)
	head := sseChunk{ID: "chatcmpl-floor", Object: "chat.completion.chunk", Created: time.Now().Unix(), Model: req.Model}
	started := false
	send := func(chunk sseChunk) error {
		if !started {
			w.Header().Set("content-type", "text/event-stream")
			w.Header().Set("cache-control", "no-cache")
			started = true
		}
		data, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(append([]byte("data: "), data...), "\n\n"...)); err != nil {
			return err
		}
		return flusher.Flush()
	}
	finish, used, err := s.relay.stream(r.Context(), req.Messages, func(text string) error {
		chunk := head
		chunk.Choices = []sseChoice{{Delta: map[string]string{"content": text}}}
		return send(chunk)
	})
	if err != nil {
		if !started {
			http.Error(w, fmt.Sprintf(`{"error":{"message":%q}}`, err.Error()), http.StatusBadGateway)
		} else {
			fmt.Fprintf(w, "data: {\"error\":{\"message\":%q}}\n\n", err.Error())
			flusher.Flush() //nolint:errcheck // the stream is over either way
		}
		return
	}
	last := head
	last.Choices = []sseChoice{{Delta: map[string]string{}, FinishReason: &finish}}
	last.Usage = used
	if send(last) == nil {
		w.Write([]byte("data: [DONE]\n\n")) //nolint:errcheck // the stream is over either way
	}
}

func listen(what, addr string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay_floor: %s: %v\n", what, err)
		os.Exit(1)
	}
	return ln
}

func main() {
	upstream := flag.String("upstream", "", "the upstream's base URL (http://HOST:PORT), without /v1")
	grpcAddr := flag.String("grpc", "127.0.0.1:0", "gRPC address to listen on")
	httpAddr := flag.String("http", "127.0.0.1:0", "HTTP address to listen on")
	flag.Parse()
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "relay_floor: -upstream is required")
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 8192, DisableCompression: true}
	server := &gateway{relay: &relay{
		client: &http.Client{Transport: transport},
		url:    *upstream + "/v1/chat/completions",
	}}

	httpLn := listen("HTTP", *httpAddr)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", server.chatCompletions)
	go func() {
		err := http.Serve(httpLn, mux)
		fmt.Fprintf(os.Stderr, "relay_floor: HTTP: %v\n", err)
		os.Exit(1)
	}()
	fmt.Printf("serving HTTP on %s (/v1/chat/completions)\n", httpLn.Addr())

	grpcLn := listen("gRPC", *grpcAddr)
	grpcSrv := grpc.NewServer()
	tiergatev1.RegisterTiergateServer(grpcSrv, server)
	fmt.Printf("serving gRPC on %s\n", grpcLn.Addr())
	if err := grpcSrv.Serve(grpcLn); err != nil {
		fmt.Fprintf(os.Stderr, "relay_floor: gRPC: %v\n", err)
		os.Exit(1)
	}
}
