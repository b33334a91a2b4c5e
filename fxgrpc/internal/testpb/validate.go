package testpb

import (
	"errors"
	"fmt"
)

// FieldError is one violation, in the shape protoc-gen-validate's errors
// have (Field and Reason).
type FieldError struct {
	field, reason string
}

// Field is the field's name.
func (e FieldError) Field() string { return e.field }

// Reason says what is wrong.
func (e FieldError) Reason() string { return e.reason }

func (e FieldError) Error() string { return fmt.Sprintf("%s: %s", e.field, e.reason) }

// Validate checks the request: a message is required and repeat is 0..10.
func (r *EchoRequest) Validate() error {
	var errs []error
	if r.GetMessage() == "" {
		errs = append(errs, FieldError{"message", "must not be empty"})
	}
	if r.GetRepeat() < 0 || r.GetRepeat() > 10 {
		errs = append(errs, FieldError{"repeat", "must be between 0 and 10"})
	}
	return errors.Join(errs...)
}
