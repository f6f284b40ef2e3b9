// Command tiergate-example asks a tiergate sidecar one question over gRPC, with Complete or StreamComplete,
// and prints the answer on stdout and the routing Decision on stderr.
//
//	go run . "Say hello"                              # Complete
//	go run . -stream -address 127.0.0.1:50051 "Say hello"   # StreamComplete
//	go run . -tool "What is the weather in Paris?"   # a tool loop: the model calls get_weather, we answer
//
// The address is -address, else $TIERGATE_ADDRESS, else 127.0.0.1:50051. When $TIERGATE_TOKEN is set, every
// call carries `authorization: Bearer <token>`. On a gRPC error it prints the status code and message and
// exits with status 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tiergatev1 "github.com/tiergate/tiergate/examples/go/gen/tiergate/v1"
)

func main() {
	address := flag.String("address", envOr("TIERGATE_ADDRESS", "127.0.0.1:50051"), "the sidecar's gRPC address")
	task := flag.String("task", "default", "the task (route) to run")
	stream := flag.Bool("stream", false, "use StreamComplete and print the text as it arrives")
	tool := flag.Bool("tool", false, "offer the model a get_weather tool and run the calls it makes (Complete)")
	timeout := flag.Float64("timeout", 30, "the request's deadline in seconds (its whole latency budget)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] PROMPT\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}

	if err := run(*address, *task, flag.Arg(0), *stream, *tool, time.Duration(*timeout*float64(time.Second))); err != nil {
		if s, ok := status.FromError(err); ok {
			// The canonical name (UNAVAILABLE), as every gRPC implementation and grpcurl print it.
			fmt.Fprintf(os.Stderr, "error: %s: %s\n", code.Code_name[int32(s.Code())], s.Message())
		} else {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
		}
		os.Exit(1)
	}
}

func run(address, task, prompt string, stream, tool bool, timeout time.Duration) error {
	// Plaintext, as the sidecar listens on loopback by default; use credentials.NewTLS for a remote one.
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := tiergatev1.NewTiergateClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if token := os.Getenv("TIERGATE_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	request := &tiergatev1.CompleteRequest{
		Task:     task,
		Messages: []*tiergatev1.Message{{Role: "user", Content: prompt}},
	}
	if tool {
		return toolLoop(ctx, client, request)
	}
	if stream {
		return streamComplete(ctx, client, request)
	}
	return complete(ctx, client, request)
}

// weatherTool is the function the model may call: its parameters are a JSON schema.
var weatherTool = &tiergatev1.Tool{
	Name:        "get_weather",
	Description: "Current weather in a city",
	Parameters:  `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`,
}

// getWeather runs the tool: a real application would call a weather service here.
func getWeather(arguments string) (string, error) {
	var args struct {
		City string `json:"city"`
	}
	if err := json.Unmarshal([]byte(arguments), &args); err != nil {
		return "", fmt.Errorf("get_weather: arguments are not JSON: %w", err)
	}
	result, err := json.Marshal(struct {
		City    string `json:"city"`
		Celsius int    `json:"celsius"`
	}{args.City, 18})
	return string(result), err
}

// toolLoop offers the tool, runs each call the model makes, sends the results back, and prints the final
// answer: at most four rounds.
func toolLoop(ctx context.Context, client tiergatev1.TiergateClient, request *tiergatev1.CompleteRequest) error {
	request.Tools = []*tiergatev1.Tool{weatherTool}
	for round := 0; round < 4; round++ {
		response, err := client.Complete(ctx, request)
		if err != nil {
			return err
		}
		calls := response.GetToolCalls()
		if len(calls) == 0 {
			fmt.Println(response.GetText())
			printDecision(response.GetDecision(), response.GetUsage())
			return nil
		}
		request.Messages = append(request.Messages, &tiergatev1.Message{Role: "assistant", ToolCalls: calls})
		for _, call := range calls {
			fmt.Fprintf(os.Stderr, "tool_call:   %s %s\n", call.GetName(), call.GetArguments())
			result, err := getWeather(call.GetArguments())
			if err != nil {
				result = fmt.Sprintf(`{"error": %q}`, err.Error())
			}
			request.Messages = append(request.Messages, &tiergatev1.Message{Role: "tool", ToolCallId: call.GetId(), Content: result})
		}
	}
	return errors.New("the model still calls tools after four rounds")
}

func complete(ctx context.Context, client tiergatev1.TiergateClient, request *tiergatev1.CompleteRequest) error {
	response, err := client.Complete(ctx, request)
	if err != nil {
		return err
	}
	fmt.Println(response.GetText())
	printDecision(response.GetDecision(), response.GetUsage())
	return nil
}

func streamComplete(ctx context.Context, client tiergatev1.TiergateClient, request *tiergatev1.CompleteRequest) error {
	chunks, err := client.StreamComplete(ctx, request)
	if err != nil {
		return err
	}
	var decision *tiergatev1.Decision
	var usage *tiergatev1.Usage
	printed := false
	for {
		chunk, err := chunks.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if printed {
				fmt.Println() // end the partial answer's line before the error
			}
			return err
		}
		fmt.Print(chunk.GetText())
		printed = printed || chunk.GetText() != ""
		// Usage and the Decision ride on the last chunk only.
		if chunk.GetDecision() != nil {
			decision, usage = chunk.GetDecision(), chunk.GetUsage()
		}
	}
	fmt.Println()
	printDecision(decision, usage)
	return nil
}

// printDecision writes the Decision to stderr in the same layout as examples/node/client.mjs.
func printDecision(d *tiergatev1.Decision, u *tiergatev1.Usage) {
	w := os.Stderr
	fmt.Fprintf(w, "served_by:   %s\n", d.GetServedBy())
	fmt.Fprintf(w, "route:       %s (%s)\n", d.GetRoute(), d.GetReason())
	fmt.Fprintf(w, "sensitivity: %s\n", d.GetSensitivity())
	if rules := d.GetMatchedRules(); len(rules) > 0 {
		fmt.Fprintf(w, "rules:       %s\n", strings.Join(rules, ", "))
	}
	for _, a := range d.GetAttempts() {
		line := fmt.Sprintf("attempt:     %s %s ttft=%.1fms latency=%.1fms", a.GetModel(), a.GetOutcome(), a.GetTtftMs(), a.GetLatencyMs())
		if a.GetHedged() {
			line += " hedged"
		}
		if a.GetError() != "" {
			line += " error=" + a.GetError()
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "tokens:      %d in, %d out\n", u.GetInputTokens(), u.GetOutputTokens())
	fmt.Fprintf(w, "cost_usd:    %.6f\n", d.GetCostUsd())
	fmt.Fprintf(w, "overhead_ms: %.2f\n", d.GetOverheadMs())
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
