// An OTLP logs/trace gRPC server on grpc-go (Debian's golang-google-grpc-dev, built in GOPATH
// mode by install.sh) for the interop suite.  Requests are taken as raw bytes through a codec of
// our own; each is appended to -out as one JSON line {signal, peer, body (base64)}, and the
// Python side decodes them.  Prints "PORT <n>" once listening.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // as the OpenTelemetry Collector registers it
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) String() string { return "proto" }

var (
	host       = flag.String("host", "127.0.0.1", "address to listen on")
	port       = flag.Int("port", 0, "port (0: a free one)")
	out        = flag.String("out", "", "file the requests are appended to")
	delayMs    = flag.Int("delay-ms", 0, "time taken by each call")
	maxStreams = flag.Int("max-streams", 0, "SETTINGS_MAX_CONCURRENT_STREAMS (0: grpc-go's default)")
	maxRecv    = flag.Int("max-recv", 0, "largest request accepted (0: grpc-go's default, 4 MiB)")
	rejected   = flag.Int("rejected", 0, "partial_success.rejected_* in every answer")
	maxAgeMs   = flag.Int("max-age-ms", 0, "MaxConnectionAge: GOAWAY after this long (0: never)")
	mu         sync.Mutex
	file       *os.File
)

func answer() []byte {
	if *rejected == 0 {
		return []byte{}
	}
	msg := []byte("rejected by the interop server")
	inner := []byte{0x08}
	for v := *rejected; ; v >>= 7 {
		if v < 128 {
			inner = append(inner, byte(v))
			break
		}
		inner = append(inner, byte(v&127|128))
	}
	inner = append(append(inner, 0x12, byte(len(msg))), msg...)
	return append([]byte{0x0a, byte(len(inner))}, inner...)
}

func handler(signal string) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(_ interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		var body []byte
		if err := dec(&body); err != nil {
			return nil, err
		}
		who := ""
		if p, ok := peer.FromContext(ctx); ok {
			who = p.Addr.String()
		}
		line, _ := json.Marshal(map[string]string{"signal": signal, "peer": who, "body": base64.StdEncoding.EncodeToString(body)})
		mu.Lock()
		file.Write(append(line, '\n'))
		mu.Unlock()
		time.Sleep(time.Duration(*delayMs) * time.Millisecond)
		reply := answer()
		return &reply, nil
	}
}

func service(name, signal string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*interface{})(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: handler(signal)}},
		Metadata:    "interop",
	}
}

func main() {
	flag.Parse()
	var err error
	if file, err = os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	opts := []grpc.ServerOption{grpc.CustomCodec(rawCodec{})}
	if *maxStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(*maxStreams)))
	}
	if *maxRecv > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(*maxRecv))
	}
	if *maxAgeMs > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: time.Duration(*maxAgeMs) * time.Millisecond, MaxConnectionAgeGrace: 5 * time.Second}))
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	server := grpc.NewServer(opts...)
	var impl interface{} = struct{}{}
	server.RegisterService(service("opentelemetry.proto.collector.logs.v1.LogsService", "logs"), impl)
	server.RegisterService(service("opentelemetry.proto.collector.trace.v1.TraceService", "traces"), impl)
	fmt.Printf("PORT %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	server.Serve(lis)
}
