"""A tiny H.264-in-MP4 writer, so the sandbox's video outputs are real, playable files.

No encoder is available offline, and none is needed: H.264 lets a macroblock carry its
pixels raw (``I_PCM``), and a P frame may skip every macroblock that did not change. So the
first frame is a picture drawn with Pillow, sent raw, and each following frame re-sends
only the few macroblocks of a progress bar that grows along the bottom edge. The result
is a Constrained Baseline stream that browsers and ffmpeg play, in a plain MP4 container
(``moov`` first, so it streams).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable

from PIL import Image, ImageDraw

_ESCAPE = re.compile(b"\x00\x00(?=[\x00-\x03])")


class _Bits:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.count = 0

    def bits(self, value: int, width: int) -> None:
        for shift in range(width - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> shift) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                self.acc = self.count = 0

    def ue(self, value: int) -> None:
        code = value + 1
        width = code.bit_length()
        self.bits(0, width - 1)
        self.bits(code, width)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while self.count:
            self.bits(0, 1)

    def raw(self, data: bytes) -> None:
        assert self.count == 0
        self.out += data

    def trailing(self) -> bytes:
        self.bits(1, 1)
        self.align_zero()
        return bytes(self.out)


def _nal(header: int, rbsp: bytes) -> bytes:
    return bytes([header]) + _ESCAPE.sub(b"\x00\x00\x03", rbsp)


def _sps(mb_width: int, mb_height: int) -> bytes:
    bits = _Bits()
    bits.bits(66, 8)  # profile: Baseline
    bits.bits(0xC0, 8)  # constraint_set0+1: Constrained Baseline
    bits.bits(40, 8)  # level 4.0
    bits.ue(0)  # seq_parameter_set_id
    bits.ue(4)  # log2_max_frame_num_minus4: frame_num is 8 bits
    bits.ue(2)  # pic_order_cnt_type 2: output order = decode order
    bits.ue(1)  # max_num_ref_frames
    bits.bits(0, 1)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(mb_width - 1)
    bits.ue(mb_height - 1)
    bits.bits(1, 1)  # frame_mbs_only_flag
    bits.bits(1, 1)  # direct_8x8_inference_flag
    bits.bits(0, 1)  # frame_cropping_flag
    bits.bits(0, 1)  # vui_parameters_present_flag
    return _nal(0x67, bits.trailing())


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pic_parameter_set_id
    bits.ue(0)  # seq_parameter_set_id
    bits.bits(0, 1)  # entropy_coding_mode_flag: CAVLC
    bits.bits(0, 1)  # bottom_field_pic_order_in_frame_present_flag
    bits.ue(0)  # num_slice_groups_minus1
    bits.ue(0)  # num_ref_idx_l0_default_active_minus1
    bits.ue(0)  # num_ref_idx_l1_default_active_minus1
    bits.bits(0, 1)  # weighted_pred_flag
    bits.bits(0, 2)  # weighted_bipred_idc
    bits.se(0)  # pic_init_qp_minus26
    bits.se(0)  # pic_init_qs_minus26
    bits.se(0)  # chroma_qp_index_offset
    bits.bits(1, 1)  # deblocking_filter_control_present_flag
    bits.bits(0, 1)  # constrained_intra_pred_flag
    bits.bits(0, 1)  # redundant_pic_cnt_present_flag
    return _nal(0x68, bits.trailing())


class _Planes:
    """A picture as studio-range Y, Cb, Cr planes (4:2:0), cut into macroblocks."""

    def __init__(self, image: Image.Image) -> None:
        self.width, self.height = image.size
        y, cb, cr = image.convert("RGB").convert("YCbCr").split()
        # JPEG's full range to video range, which also keeps 0x00 out of the raw samples.
        self.y = y.point(lambda v: 16 + v * 219 // 255).tobytes()
        half = (self.width // 2, self.height // 2)
        self.cb = (
            cb.resize(half, Image.Resampling.BOX).point(lambda v: 16 + v * 224 // 255).tobytes()
        )
        self.cr = (
            cr.resize(half, Image.Resampling.BOX).point(lambda v: 16 + v * 224 // 255).tobytes()
        )

    def macroblock(self, mbx: int, mby: int) -> bytes:
        out = bytearray()
        for row in range(16):
            start = (mby * 16 + row) * self.width + mbx * 16
            out += self.y[start : start + 16]
        half = self.width // 2
        for plane in (self.cb, self.cr):
            for row in range(8):
                start = (mby * 8 + row) * half + mbx * 8
                out += plane[start : start + 8]
        return bytes(out)


def _idr_slice(planes: _Planes, mb_width: int, mb_height: int, idr_id: int) -> bytes:
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I (all slices)
    bits.ue(0)  # pic_parameter_set_id
    bits.bits(0, 8)  # frame_num
    bits.ue(idr_id)  # idr_pic_id
    bits.bits(0, 1)  # no_output_of_prior_pics_flag
    bits.bits(0, 1)  # long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc: off
    for mby in range(mb_height):
        for mbx in range(mb_width):
            bits.ue(25)  # mb_type I_PCM
            bits.align_zero()
            bits.raw(planes.macroblock(mbx, mby))
    return _nal(0x65, bits.trailing())


def _p_slice(
    bottom: _Planes, mb_width: int, mb_height: int, frame_num: int, coded: set[int]
) -> bytes:
    """A P frame where only ``coded`` macroblocks (all in the bottom row) are re-sent."""
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(5)  # slice_type: P (all slices)
    bits.ue(0)  # pic_parameter_set_id
    bits.bits(frame_num % 256, 8)
    bits.bits(0, 1)  # num_ref_idx_active_override_flag
    bits.bits(0, 1)  # ref_pic_list_modification_flag_l0
    bits.bits(0, 1)  # adaptive_ref_pic_marking_mode_flag: sliding window
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc
    total = mb_width * mb_height
    skipped = 0
    for address in range(total):
        if address not in coded:
            skipped += 1
            continue
        bits.ue(skipped)  # mb_skip_run before this macroblock
        skipped = 0
        bits.ue(30)  # mb_type: I_PCM inside a P slice (5 + 25)
        bits.align_zero()
        bits.raw(bottom.macroblock(address % mb_width, 0))
    if skipped:
        bits.ue(skipped)
    return _nal(0x41, bits.trailing())


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _moov(
    width: int, height: int, sizes: list[int], fps: int, sps: bytes, pps: bytes, offset: int
) -> bytes:
    count = len(sizes)
    duration_ms = count * 1000 // fps
    timescale = fps * 1000
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
        struct.pack(">H", len(sps)) + sps,
        bytes([1]) + struct.pack(">H", len(pps)) + pps,
    )
    name = b"runflow sandbox"
    avc1 = _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1),
        bytes(16),
        struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
        bytes([len(name)]) + name.ljust(31, b"\x00"),
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full(b"stts", 0, 0, struct.pack(">III", 1, count, 1000)),
        _full(b"stss", 0, 0, struct.pack(">II", 1, 1)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1)),
        _full(
            b"stsz",
            0,
            0,
            struct.pack(">II", 0, count),
            b"".join(struct.pack(">I", s) for s in sizes),
        ),
        _full(b"stco", 0, 0, struct.pack(">II", 1, offset)),
    )
    minf = _box(
        b"minf",
        _full(b"vmhd", 0, 1, bytes(8)),
        _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))),
        stbl,
    )
    mdia = _box(
        b"mdia",
        _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, count * 1000, 0x55C4, 0)),
        _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00"),
        minf,
    )
    tkhd = _full(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, 1, 0, duration_ms),
        bytes(8),
        struct.pack(">hhHH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, 1000, duration_ms, 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),
    )
    return _box(b"moov", mvhd, _box(b"trak", tkhd, mdia))


def _length_prefixed(nals: Iterable[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(nal)) + nal for nal in nals)


def make_video(
    picture: Image.Image, seconds: float, fps: int = 12, bar: tuple[int, int, int] = (255, 255, 255)
) -> bytes:
    """An MP4 of ``seconds`` showing ``picture`` while a bar fills along the bottom."""
    width = max(16, picture.width // 16 * 16)
    height = max(32, picture.height // 16 * 16)
    frame = (
        picture.convert("RGB").resize((width, height))
        if picture.size != (width, height)
        else picture.convert("RGB")
    )
    mb_width, mb_height = width // 16, height // 16
    sps, pps = _sps(mb_width, mb_height), _pps()
    count = max(1, round(seconds * fps))
    samples = [_length_prefixed([_idr_slice(_Planes(frame), mb_width, mb_height, 0)])]
    draw = ImageDraw.Draw(frame)
    bar_top = height - 12
    previous = 0
    for index in range(1, count):
        reach = width * index // max(1, count - 1)
        draw.rectangle((previous, bar_top, max(previous, reach - 1), height - 5), fill=bar)
        first, last = previous // 16, max(previous, reach - 1) // 16
        coded = {(mb_height - 1) * mb_width + mbx for mbx in range(first, last + 1)}
        bottom = _Planes(frame.crop((0, height - 16, width, height)))
        samples.append(_length_prefixed([_p_slice(bottom, mb_width, mb_height, index, coded)]))
        previous = reach
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    placeholder = _moov(width, height, [len(s) for s in samples], fps, sps, pps, 0)
    offset = len(ftyp) + len(placeholder) + 8
    moov = _moov(width, height, [len(s) for s in samples], fps, sps, pps, offset)
    mdat = b"".join(samples)
    return ftyp + moov + struct.pack(">I", 8 + len(mdat)) + b"mdat" + mdat
