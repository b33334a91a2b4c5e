// Package bufvalidate checks gRPC requests against their buf.validate rules
// with protovalidate, for fxgrpc's server. It is a package of its own
// because protovalidate links a CEL interpreter (cel-go, antlr), several
// megabytes that a service without buf.validate rules should not carry.
//
// With Fx, add Module to the app:
//
//	martyfx.Run(bufvalidate.Module, fxgrpc.AsService(...))
//
// Without Fx, give New's validator to fxgrpc.ServerOptions.Validator.
//
// A request whose message type (or a message it contains) has rules is
// checked before the handler runs; a violation is InvalidArgument with a
// google.rpc.BadRequest detail listing each field and its reason. Message
// types without rules cost a cached lookup. A message's own Validate or
// ValidateAll method, when it has one, runs instead (fxgrpc does that).
package bufvalidate

import (
	"errors"
	"fmt"
	"sync"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"go.uber.org/fx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/martyfx/martyfx/fxgrpc"
)

// Module gives fxgrpc's server a Validator that enforces buf.validate rules.
var Module = fx.Module("martyfx.grpc.bufvalidate",
	fx.Provide(fx.Annotate(New, fx.As(new(fxgrpc.MessageValidator)))),
)

// Validator enforces buf.validate rules; it is an fxgrpc.MessageValidator.
// protovalidate compiles a message type's rules once.
type Validator struct {
	pv    protovalidate.Validator
	rules sync.Map // protoreflect.FullName -> bool: the type has rules
}

var _ fxgrpc.MessageValidator = (*Validator)(nil)

// New returns a Validator.
func New() (*Validator, error) {
	pv, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("bufvalidate: %w", err)
	}
	return &Validator{pv: pv}, nil
}

// ValidateMessage returns nil when msg satisfies its rules (or has none),
// InvalidArgument with the violations when it does not, and Internal when a
// rule does not compile (the server's bug, not the caller's).
func (v *Validator) ValidateMessage(msg proto.Message) error {
	if !v.hasRules(msg.ProtoReflect().Descriptor()) {
		return nil
	}
	err := v.pv.Validate(msg)
	var ve *protovalidate.ValidationError
	if errors.As(err, &ve) {
		return violations(ve)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "validation rules: %v", err)
	}
	return nil
}

// hasRules reports whether messages of this type carry buf.validate rules,
// on themselves or on any message they contain: walking a rule-less message
// through protovalidate costs more than this cached answer.
func (v *Validator) hasRules(md protoreflect.MessageDescriptor) bool {
	if r, ok := v.rules.Load(md.FullName()); ok {
		return r.(bool)
	}
	r := rulesIn(md, map[protoreflect.FullName]bool{})
	v.rules.Store(md.FullName(), r)
	return r
}

func rulesIn(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if proto.HasExtension(md.Options(), validate.E_Message) {
		return true
	}
	for i := 0; i < md.Oneofs().Len(); i++ {
		if proto.HasExtension(md.Oneofs().Get(i).Options(), validate.E_Oneof) {
			return true
		}
	}
	for i := 0; i < md.Fields().Len(); i++ {
		f := md.Fields().Get(i)
		if proto.HasExtension(f.Options(), validate.E_Field) {
			return true
		}
		if f.Message() != nil && rulesIn(f.Message(), seen) {
			return true
		}
	}
	return false
}

// violations is InvalidArgument for protovalidate's violations.
func violations(ve *protovalidate.ValidationError) error {
	br := &errdetails.BadRequest{}
	for _, v := range ve.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
		})
	}
	st := status.New(codes.InvalidArgument, "invalid request: "+ve.Error())
	if withDetails, err := st.WithDetails(br); err == nil {
		st = withDetails
	}
	return st.Err()
}
