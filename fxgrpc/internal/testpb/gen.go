//go:build ignore

// Command gen writes echo.pb.go, the messages of the test-only Echo service,
// without protoc: the file descriptor of echo.proto is built here and fed to
// protoc-gen-go's own generator. Run from fxgrpc/internal/testpb:
//
//	go run gen.go
//
// echo_grpc.pb.go (the service stubs) is written by hand in the shape
// protoc-gen-go-grpc produces.
package main

import (
	"log"
	"os"
	"path/filepath"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("echo.proto"),
		Package: proto.String("martyfx.fxgrpc.testpb"),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String("github.com/martyfx/martyfx/fxgrpc/internal/testpb;testpb")},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("message"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("message")},
				{Name: proto.String("repeat"), Number: proto.Int32(2), Type: i32, Label: opt, JsonName: proto.String("repeat")},
				{Name: proto.String("sleep_ms"), Number: proto.Int32(3), Type: i32, Label: opt, JsonName: proto.String("sleepMs")},
				{Name: proto.String("fail"), Number: proto.Int32(4), Type: str, Label: opt, JsonName: proto.String("fail")},
			}},
			{Name: proto.String("EchoResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("message"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("message")},
				{Name: proto.String("trace_id"), Number: proto.Int32(2), Type: str, Label: opt, JsonName: proto.String("traceId")},
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Echo"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Echo"), InputType: proto.String(".martyfx.fxgrpc.testpb.EchoRequest"), OutputType: proto.String(".martyfx.fxgrpc.testpb.EchoResponse")},
				{Name: proto.String("EchoStream"), InputType: proto.String(".martyfx.fxgrpc.testpb.EchoRequest"), OutputType: proto.String(".martyfx.fxgrpc.testpb.EchoResponse"), ServerStreaming: proto.Bool(true)},
				{Name: proto.String("Collect"), InputType: proto.String(".martyfx.fxgrpc.testpb.EchoRequest"), OutputType: proto.String(".martyfx.fxgrpc.testpb.EchoResponse"), ClientStreaming: proto.Bool(true)},
			},
		}},
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"echo.proto"},
		Parameter:      proto.String("paths=source_relative"),
		ProtoFile:      []*descriptorpb.FileDescriptorProto{fd},
	}
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range gen.Files {
		if f.Generate {
			gengo.GenerateFile(gen, f)
		}
	}
	resp := gen.Response()
	if resp.Error != nil {
		log.Fatal(resp.GetError())
	}
	for _, f := range resp.File {
		if err := os.WriteFile(filepath.Base(f.GetName()), []byte(f.GetContent()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
