/* SPDX-License-Identifier: MIT */
/*
 * python3.11's layouts that pystack.c reads (x86-64): from Python's
 * Include/cpython/pystate.h, Include/internal/pycore_frame.h,
 * Include/cpython/code.h and Include/cpython/unicodeobject.h.
 * tests/unit/t_pyoffsets.c checks every value against those headers.
 */
#ifndef KP_PYOFFSETS_H
#define KP_PYOFFSETS_H

#define PY311_TSTATE_CFRAME 56         /* PyThreadState.cframe */
#define PY311_CFRAME_CURRENT_FRAME 8   /* _PyCFrame.current_frame */
#define PY311_FRAME_F_CODE 32          /* _PyInterpreterFrame.f_code */
#define PY311_FRAME_PREVIOUS 48        /* .previous */
#define PY311_FRAME_PREV_INSTR 56      /* .prev_instr */
#define PY311_FRAME_IS_ENTRY 68        /* .is_entry (a bool) */
#define PY311_CODE_CO_FILENAME 112     /* PyCodeObject.co_filename */
#define PY311_CODE_CO_QUALNAME 128     /* .co_qualname */
#define PY311_CODE_CO_FIRSTLINENO 72   /* .co_firstlineno (an int) */
#define PY311_CODE_CO_LINETABLE 136    /* .co_linetable (bytes) */
#define PY311_BYTES_SIZE 16            /* PyBytesObject: ob_size */
#define PY311_BYTES_DATA 32            /* .ob_sval */
#define PY311_CODE_CO_CODE_ADAPTIVE 184 /* .co_code_adaptive: bytecode */
#define PY311_ASCII_LENGTH 16          /* PyASCIIObject.length */
#define PY311_ASCII_STATE 32           /* .state, a word of bit fields */
#define PY311_STATE_COMPACT 0x20u      /* .state.compact */
#define PY311_STATE_ASCII 0x40u        /* .state.ascii */
#define PY311_ASCII_DATA 48            /* a compact ASCII string's chars */
#define PY311_COMPACT_UTF8_LENGTH 48   /* PyCompactUnicodeObject */
#define PY311_COMPACT_UTF8 56

#endif
