/*
 * preload/pyoffsets.h against python3.11's own headers (python3-dev):
 * the offsets kprof reads the interpreter's frames with
 * (preload/pystack.c) must be the interpreter's. Built against the
 * headers pkg-config names for python3; on another version than 3.11
 * the first test fails, saying so (pystack.c reads 3.11 only).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_frame.h>
#include <stddef.h>
#include <string.h>

#include "harness.h"
#include "pyoffsets.h"

TEST(version_is_3_11)
{
	CHECK_EQ_U(PY_MAJOR_VERSION * 100 + PY_MINOR_VERSION, 311);
}

TEST(frame_offsets)
{
	CHECK_EQ_U(offsetof(PyThreadState, cframe), PY311_TSTATE_CFRAME);
	CHECK_EQ_U(offsetof(_PyCFrame, current_frame),
		   PY311_CFRAME_CURRENT_FRAME);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, f_code), PY311_FRAME_F_CODE);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, previous),
		   PY311_FRAME_PREVIOUS);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, prev_instr),
		   PY311_FRAME_PREV_INSTR);
	CHECK_EQ_U(offsetof(_PyInterpreterFrame, is_entry),
		   PY311_FRAME_IS_ENTRY);
	CHECK_EQ_U(sizeof(((_PyInterpreterFrame *)0)->is_entry), 1);
}

TEST(code_offsets)
{
	CHECK_EQ_U(offsetof(PyObject, ob_type), 8);
	CHECK_EQ_U(offsetof(PyCodeObject, co_filename), PY311_CODE_CO_FILENAME);
	CHECK_EQ_U(offsetof(PyCodeObject, co_qualname), PY311_CODE_CO_QUALNAME);
	CHECK_EQ_U(offsetof(PyCodeObject, co_code_adaptive),
		   PY311_CODE_CO_CODE_ADAPTIVE);
}

TEST(string_layout)
{
	CHECK_EQ_U(offsetof(PyASCIIObject, length), PY311_ASCII_LENGTH);
	CHECK_EQ_U(offsetof(PyASCIIObject, state), PY311_ASCII_STATE);
	CHECK_EQ_U(sizeof(PyASCIIObject), PY311_ASCII_DATA);
	CHECK_EQ_U(offsetof(PyCompactUnicodeObject, utf8_length),
		   PY311_COMPACT_UTF8_LENGTH);
	CHECK_EQ_U(offsetof(PyCompactUnicodeObject, utf8), PY311_COMPACT_UTF8);
	PyASCIIObject a;
	unsigned w;
	memset(&a, 0, sizeof(a));
	a.state.compact = 1;
	memcpy(&w, &a.state, 4);
	CHECK_EQ_U(w, PY311_STATE_COMPACT);
	memset(&a, 0, sizeof(a));
	a.state.ascii = 1;
	memcpy(&w, &a.state, 4);
	CHECK_EQ_U(w, PY311_STATE_ASCII);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(version_is_3_11), T(frame_offsets),
			 T(code_offsets), T(string_layout));
}
