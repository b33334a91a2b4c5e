package fxcore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/fx"
)

// ErrorClass says what a client can do about an error. The layer that
// knows an error classifies it (fxrepo for the database, a service for its
// own rules); the servers map the class to a code (fxgrpc to a gRPC status,
// fxhttp to an HTTP status), so no module below the servers imports grpc or
// net/http to answer well. The zero value, ClassUnknown, is an error nobody
// classified: clients get "internal error" and a reference to the log line
// that has the full error.
type ErrorClass uint8

// The error classes, named after the gRPC codes they map to.
const (
	// ClassUnknown is an unclassified error: internal error (gRPC INTERNAL, HTTP 500).
	ClassUnknown ErrorClass = iota
	// ClassInvalid is a request the client must change: a bad value, a
	// value the database refuses (gRPC INVALID_ARGUMENT, HTTP 400).
	ClassInvalid
	// ClassNotFound is an entity that does not exist (NOT_FOUND, 404).
	ClassNotFound
	// ClassAlreadyExists is a create that collides with an existing entity,
	// a unique key (ALREADY_EXISTS, 409).
	ClassAlreadyExists
	// ClassFailedPrecondition is a request the state of the system refuses
	// (cancel a cancelled order, delete a referenced row): retrying as is
	// will fail again (FAILED_PRECONDITION, 400).
	ClassFailedPrecondition
	// ClassAborted is a concurrency conflict (serialization failure,
	// deadlock, stale version): retrying the whole operation may succeed
	// (ABORTED, 409).
	ClassAborted
	// ClassUnavailable is a dependency that is down or overloaded (the
	// database restarting, refusing connections): retry later, with
	// backoff (UNAVAILABLE, 503 with Retry-After).
	ClassUnavailable
	// ClassResourceExhausted is a quota or rate limit (RESOURCE_EXHAUSTED, 429).
	ClassResourceExhausted
	// ClassDeadlineExceeded is an operation that ran out of time
	// (DEADLINE_EXCEEDED, 504).
	ClassDeadlineExceeded
	// ClassCanceled is an operation the caller cancelled (CANCELLED, 499).
	ClassCanceled
	// ClassPermissionDenied is a caller not allowed to do this (PERMISSION_DENIED, 403).
	ClassPermissionDenied
	// ClassUnauthenticated is a caller without valid credentials (UNAUTHENTICATED, 401).
	ClassUnauthenticated
	// ClassUnimplemented is an operation this server does not offer (UNIMPLEMENTED, 501).
	ClassUnimplemented
	// ClassInternal is a bug or broken invariant, classified as such: like
	// ClassUnknown, clients get "internal error" and a reference.
	ClassInternal
)

var classNames = [...]string{
	ClassUnknown:            "unknown",
	ClassInvalid:            "invalid",
	ClassNotFound:           "not_found",
	ClassAlreadyExists:      "already_exists",
	ClassFailedPrecondition: "failed_precondition",
	ClassAborted:            "aborted",
	ClassUnavailable:        "unavailable",
	ClassResourceExhausted:  "resource_exhausted",
	ClassDeadlineExceeded:   "deadline_exceeded",
	ClassCanceled:           "canceled",
	ClassPermissionDenied:   "permission_denied",
	ClassUnauthenticated:    "unauthenticated",
	ClassUnimplemented:      "unimplemented",
	ClassInternal:           "internal",
}

var classMessages = [...]string{
	ClassUnknown:            "internal error",
	ClassInvalid:            "invalid request",
	ClassNotFound:           "not found",
	ClassAlreadyExists:      "already exists",
	ClassFailedPrecondition: "the request cannot be applied in the current state",
	ClassAborted:            "the operation conflicted with another one; retry it",
	ClassUnavailable:        "the service is unavailable; retry later",
	ClassResourceExhausted:  "too many requests; retry later",
	ClassDeadlineExceeded:   "the deadline expired before the operation completed",
	ClassCanceled:           "the request was cancelled",
	ClassPermissionDenied:   "permission denied",
	ClassUnauthenticated:    "authentication required",
	ClassUnimplemented:      "not implemented",
	ClassInternal:           "internal error",
}

// String returns the class's name: "not_found", "unavailable" ...
func (c ErrorClass) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("ErrorClass(%d)", uint8(c))
}

// Message is the class's default message for clients.
func (c ErrorClass) Message() string {
	if int(c) < len(classMessages) {
		return classMessages[c]
	}
	return classMessages[ClassUnknown]
}

// Retryable reports whether retrying the same operation later may succeed:
// ClassUnavailable (after a wait) and ClassAborted (the whole operation,
// at once).
func (c ErrorClass) Retryable() bool { return c == ClassUnavailable || c == ClassAborted }

// Internal reports whether clients must not see the error's text:
// ClassUnknown and ClassInternal.
func (c ErrorClass) Internal() bool {
	return c == ClassUnknown || c == ClassInternal || int(c) >= len(classNames)
}

// Classified is an error that knows its class and what a client may read
// about it. PublicMessage never holds internals (driver texts, hosts, users,
// database names); Error() may, for the logs. Errors anywhere in a chain
// are found with errors.As.
type Classified interface {
	ErrorClass() ErrorClass
	PublicMessage() string
}

// Error is a classified error for service code: the class, the message a
// client reads, and the cause for the logs.
//
//	return fxcore.NewError(fxcore.ClassFailedPrecondition, "order 42 is cancelled", nil)
type Error struct {
	// Class is what the client can do about it.
	Class ErrorClass
	// Message is what the client reads; "" means the class's default.
	Message string
	// Err is the cause, logged but never shown; may be nil.
	Err error
}

// NewError returns an *Error of class with the client's message and the
// cause (nil for none).
func NewError(class ErrorClass, message string, cause error) *Error {
	return &Error{Class: class, Message: message, Err: cause}
}

// Error is "message: cause".
func (e *Error) Error() string {
	msg := e.PublicMessage()
	if e.Err == nil {
		return msg
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrorClass returns Class.
func (e *Error) ErrorClass() ErrorClass { return e.Class }

// PublicMessage returns Message, or the class's default message.
func (e *Error) PublicMessage() string {
	if e.Message == "" {
		return e.Class.Message()
	}
	return e.Message
}

// Classifier classifies errors it recognises (a driver's, a client
// library's) that do not implement Classified themselves; ok is false for
// the others. message is for clients ("" for the class's default) and must
// hold no internals. A module registers one with AsClassifier (fxrepo does,
// for database errors), and the servers consult them.
type Classifier func(err error) (class ErrorClass, message string, ok bool)

// DefaultRetryAfter is how long clients are told to wait before retrying an
// unavailable service (gRPC RetryInfo, HTTP Retry-After).
const DefaultRetryAfter = time.Second

// Classification is what Classify found.
type Classification struct {
	// Class of the error; ClassUnknown when nothing classified it.
	Class ErrorClass
	// Message for the client: the error's public message or the class's
	// default; "internal error" for ClassUnknown and ClassInternal.
	Message string
	// RetryAfter is how long to wait before retrying: DefaultRetryAfter
	// for ClassUnavailable (or the error's own RetryAfter() time.Duration),
	// else 0.
	RetryAfter time.Duration
}

// Classify finds err's class, in this order: the first error in the chain
// that implements Classified; context.Canceled and context.DeadlineExceeded
// anywhere in the chain; the first classifier that knows err; otherwise
// ClassUnknown. A nil err is ClassUnknown with no message.
func Classify(err error, classifiers ...Classifier) Classification {
	if err == nil {
		return Classification{}
	}
	f, ok := classifyChain(err, classifiers)
	class := f.class
	if class.Internal() {
		class = ClassUnknown
		if ok {
			class = ClassInternal
		}
		return Classification{Class: class, Message: class.Message()}
	}
	out := Classification{Class: class, Message: f.message}
	if out.Message == "" {
		out.Message = class.Message()
	}
	if class == ClassUnavailable {
		out.RetryAfter = DefaultRetryAfter
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			out.RetryAfter = ra.RetryAfter()
		}
	}
	return out
}

type found struct {
	class   ErrorClass
	message string
}

func classifyChain(err error, classifiers []Classifier) (found, bool) {
	var cl Classified
	if errors.As(err, &cl) {
		return found{cl.ErrorClass(), cl.PublicMessage()}, true
	}
	switch {
	case errors.Is(err, context.Canceled):
		return found{ClassCanceled, ""}, true
	case errors.Is(err, context.DeadlineExceeded):
		return found{ClassDeadlineExceeded, ""}, true
	}
	for _, c := range classifiers {
		if c == nil {
			continue
		}
		if class, msg, ok := c(err); ok {
			return found{class, msg}, true
		}
	}
	return found{}, false
}

// ClassifierGroup is the value group of AsClassifier; servers take it as
// `group:"martyfx.core.classifiers"`.
const ClassifierGroup = "martyfx.core.classifiers"

// AsClassifier registers an error Classifier that the servers (fxgrpc,
// fxhttp) consult to map errors to codes. ctor is a Classifier, a
// func(error) (ErrorClass, string, bool), or a constructor returning one.
func AsClassifier(ctor any) fx.Option {
	return Group(ClassifierGroup, "fxcore.AsClassifier", ctor, func(v any) (Classifier, error) {
		switch f := v.(type) {
		case Classifier:
			if f != nil {
				return f, nil
			}
		case func(error) (ErrorClass, string, bool):
			if f != nil {
				return Classifier(f), nil
			}
		}
		return nil, fmt.Errorf("got %T, want an fxcore.Classifier (func(error) (fxcore.ErrorClass, string, bool))", v)
	})
}
