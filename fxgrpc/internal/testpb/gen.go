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

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	// CheckRequest carries protovalidate (buf.validate) rules.
	email := &descriptorpb.FieldOptions{}
	proto.SetExtension(email, validate.E_Field, &validate.FieldRules{
		Type: &validate.FieldRules_String_{String_: &validate.StringRules{WellKnown: &validate.StringRules_Email{Email: true}}},
	})
	count := &descriptorpb.FieldOptions{}
	proto.SetExtension(count, validate.E_Field, &validate.FieldRules{
		Type: &validate.FieldRules_Int32{Int32: &validate.Int32Rules{
			GreaterThan: &validate.Int32Rules_Gte{Gte: 1}, LessThan: &validate.Int32Rules_Lte{Lte: 10}}},
	})
	fd := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("echo.proto"),
		Dependency: []string{"buf/validate/validate.proto"},
		Package:    proto.String("martyfx.fxgrpc.testpb"),
		Syntax:     proto.String("proto3"),
		Options:    &descriptorpb.FileOptions{GoPackage: proto.String("github.com/martyfx/martyfx/fxgrpc/internal/testpb;testpb")},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("message"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("message")},
				{Name: proto.String("repeat"), Number: proto.Int32(2), Type: i32, Label: opt, JsonName: proto.String("repeat")},
				{Name: proto.String("sleep_ms"), Number: proto.Int32(3), Type: i32, Label: opt, JsonName: proto.String("sleepMs")},
				{Name: proto.String("fail"), Number: proto.Int32(4), Type: str, Label: opt, JsonName: proto.String("fail")},
			}},
			{Name: proto.String("CheckRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("email"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("email"), Options: email},
				{Name: proto.String("count"), Number: proto.Int32(2), Type: i32, Label: opt, JsonName: proto.String("count"), Options: count},
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
				{Name: proto.String("Check"), InputType: proto.String(".martyfx.fxgrpc.testpb.CheckRequest"), OutputType: proto.String(".martyfx.fxgrpc.testpb.EchoResponse")},
				{Name: proto.String("Collect"), InputType: proto.String(".martyfx.fxgrpc.testpb.EchoRequest"), OutputType: proto.String(".martyfx.fxgrpc.testpb.EchoResponse"), ClientStreaming: proto.Bool(true)},
			},
		}},
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"echo.proto"},
		Parameter:      proto.String("paths=source_relative"),
		ProtoFile:      append(deps(validate.File_buf_validate_validate_proto, map[string]bool{}), fd),
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

// deps lists f and its imports, imports first, as protoc hands them over.
func deps(f protoreflect.FileDescriptor, seen map[string]bool) []*descriptorpb.FileDescriptorProto {
	if seen[f.Path()] {
		return nil
	}
	seen[f.Path()] = true
	var out []*descriptorpb.FileDescriptorProto
	imports := f.Imports()
	for i := 0; i < imports.Len(); i++ {
		out = append(out, deps(imports.Get(i).FileDescriptor, seen)...)
	}
	return append(out, protodesc.ToFileDescriptorProto(f))
}
