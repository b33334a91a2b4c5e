package fxevents

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Content types of the default codec.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/protobuf"
)

// Codec encodes events into payloads and decodes them back. The Module
// provides DefaultCodec; replace it with fx.Decorate to use another format.
type Codec interface {
	// Encode returns the payload of ev and its content type.
	Encode(ev Event) (contentType string, payload []byte, err error)
	// Decode fills into (a pointer) from a payload of the content type.
	Decode(contentType string, payload []byte, into any) error
}

// DefaultCodec encodes proto.Message events as protobuf and everything
// else as JSON, and decodes both.
func DefaultCodec() Codec { return defaultCodec{} }

type defaultCodec struct{}

func (defaultCodec) Encode(ev Event) (string, []byte, error) {
	if m, ok := ev.(proto.Message); ok {
		b, err := proto.Marshal(m)
		return ContentTypeProtobuf, b, err
	}
	b, err := json.Marshal(ev)
	return ContentTypeJSON, b, err
}

func (defaultCodec) Decode(contentType string, payload []byte, into any) error {
	switch contentType {
	case ContentTypeJSON, "":
		return json.Unmarshal(payload, into)
	case ContentTypeProtobuf:
		m, ok := into.(proto.Message)
		if !ok {
			return fmt.Errorf("protobuf payload into %T, which is not a proto.Message", into)
		}
		return proto.Unmarshal(payload, m)
	default:
		return fmt.Errorf("unsupported content type %q", contentType)
	}
}
