;; The hot loops of the forward pass in WebAssembly SIMD: the float32 matrix-vector product,
;; and one query head's attention (scores over the key cache, softmax, value sums).
;;
;; Every result is bit-identical to the JavaScript reference kernels in lib/llm/math.ts:
;; each dot product is still summed in order in double precision and rounded to float32 once.
;; SIMD lanes run across independent sums (eight matrix rows, or four output elements), never
;; within one sum, so no sum is reordered. The product of two float32 values is exact in
;; double precision, so f64x2.mul of promoted lanes gives what JavaScript's `w[i] * x[c]` gives.
;;
;; Pointers are byte addresses in the imported memory; lengths count float32 elements.
;; lib/llm/kernels.ts owns the memory (one per Gateway or HeadGroup) and its layout:
;;   bytes [0, 32)     scratch for the last, partial block of rows of `matvec`
;;   bytes [64, 320)   2^(j/32) for j in 0..31 as float64: math.ts EXP_FRACTION, written by the loader
;;   bytes [512, ...)  matrices, key/value caches and vectors, bump-allocated.
;;
;; Row-block layout of a float32 matrix W [rows, cols]: rows are taken in blocks of eight, and
;; block b stores, column by column, the eight values W[8b + k, c] (k = 0..7) promoted to
;; float64 (exactly): 64 bytes per column. Rows past the end of the last block are zero. One
;; v128 load then holds two rows' weights for one column, ready to multiply: storing float64
;; instead of promoting float32 lanes in the loop made the product 30% faster (docs/PERFORMANCE.md).
(module
  (import "env" "memory" (memory 1))
  ;; Math.exp, for the arguments expf leaves to it (outside (-104, 89), and NaN)
  (import "env" "exp" (func $exp (param f64) (result f64)))

  ;; out[r] = sum over c of W[r, c] * x[c], for r < rows. W (float64) in row-block layout at $w;
  ;; x [cols]; out [rows]. Each row is summed in column order in double precision: lanes of
  ;; $s0..$s3 are rows 8b+0..8b+7 of the current block.
  (func $matvec (export "matvec") (param $w i32) (param $x i32) (param $out i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $p i32) (local $xEnd i32) (local $dst i32) (local $k i32)
    (local $xc v128) (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local.set $xEnd (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_s (local.get $r) (local.get $rows)))
        (local.set $s0 (v128.const i64x2 0 0))
        (local.set $s1 (v128.const i64x2 0 0))
        (local.set $s2 (v128.const i64x2 0 0))
        (local.set $s3 (v128.const i64x2 0 0))
        (local.set $p (local.get $x))
        (if (i32.gt_s (local.get $cols) (i32.const 0))
          (then
            (loop $columns
              ;; xc = (x[c], x[c]); W[8b+0..7, c] are four f64x2 loads
              (local.set $xc (f64x2.splat (f64.promote_f32 (f32.load (local.get $p)))))
              (local.set $s0 (f64x2.add (local.get $s0) (f64x2.mul (v128.load (local.get $w)) (local.get $xc))))
              (local.set $s1 (f64x2.add (local.get $s1) (f64x2.mul (v128.load offset=16 (local.get $w)) (local.get $xc))))
              (local.set $s2 (f64x2.add (local.get $s2) (f64x2.mul (v128.load offset=32 (local.get $w)) (local.get $xc))))
              (local.set $s3 (f64x2.add (local.get $s3) (f64x2.mul (v128.load offset=48 (local.get $w)) (local.get $xc))))
              (local.set $w (i32.add (local.get $w) (i32.const 64)))
              (local.set $p (i32.add (local.get $p) (i32.const 4)))
              (br_if $columns (i32.lt_u (local.get $p) (local.get $xEnd))))))
        ;; the eight sums rounded to float32: straight into out for a whole block, else into
        ;; the scratch bytes [0, 32), of which the rows that exist are copied
        (local.set $dst
          (select (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))) (i32.const 0)
            (i32.ge_s (i32.sub (local.get $rows) (local.get $r)) (i32.const 8))))
        (v128.store (local.get $dst)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $s0)) (f32x4.demote_f64x2_zero (local.get $s1))))
        (v128.store offset=16 (local.get $dst)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $s2)) (f32x4.demote_f64x2_zero (local.get $s3))))
        (if (i32.eqz (local.get $dst))
          (then
            (local.set $k (i32.const 0))
            (loop $tail
              (f32.store
                (i32.add (local.get $out) (i32.shl (i32.add (local.get $r) (local.get $k)) (i32.const 2)))
                (f32.load (i32.shl (local.get $k) (i32.const 2))))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $tail (i32.lt_s (i32.add (local.get $r) (local.get $k)) (local.get $rows))))))
        (local.set $r (i32.add (local.get $r) (i32.const 8)))
        (br $blocks))))

  ;; out[r] = sum over groups g of scale[r, g] * (sum over i < gs of q[r, g*gs + i] * x[g*gs + i]),
  ;; for r < rows: quant.ts matmulInt8. q: int8 W [rows, cols] in row-block layout (8 bytes per
  ;; column of a block); scales [rows, cols / gs] in row-block layout (32 bytes per group of a
  ;; block); x [cols]; out [rows]. Each group's dot product and each row's sum over groups run
  ;; in order in double precision, as in quant.ts; int8 times float32 is exact in double.
  (func $matvecInt8 (export "matvec_int8") (param $q i32) (param $scales i32) (param $x i32) (param $out i32)
      (param $rows i32) (param $cols i32) (param $gs i32)
    (local $r i32) (local $p i32) (local $xEnd i32) (local $gEnd i32) (local $dst i32) (local $k i32)
    (local $xc v128) (local $qv v128) (local $lo v128) (local $hi v128) (local $sc v128)
    (local $s0 v128) (local $s1 v128) (local $s2 v128) (local $s3 v128)
    (local $d0 v128) (local $d1 v128) (local $d2 v128) (local $d3 v128)
    (local.set $xEnd (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_s (local.get $r) (local.get $rows)))
        (local.set $s0 (v128.const i64x2 0 0))
        (local.set $s1 (v128.const i64x2 0 0))
        (local.set $s2 (v128.const i64x2 0 0))
        (local.set $s3 (v128.const i64x2 0 0))
        (local.set $p (local.get $x))
        (block $groupsDone
          (loop $groups
            (br_if $groupsDone (i32.ge_u (local.get $p) (local.get $xEnd)))
            (local.set $d0 (v128.const i64x2 0 0))
            (local.set $d1 (v128.const i64x2 0 0))
            (local.set $d2 (v128.const i64x2 0 0))
            (local.set $d3 (v128.const i64x2 0 0))
            (local.set $gEnd (i32.add (local.get $p) (i32.shl (local.get $gs) (i32.const 2))))
            (loop $columns
              ;; xc = (x[c], x[c]); the block's eight int8 weights of column c as int32 lanes
              (local.set $xc (f64x2.splat (f64.promote_f32 (f32.load (local.get $p)))))
              (local.set $qv (i16x8.extend_low_i8x16_s (v128.load64_zero (local.get $q))))
              (local.set $lo (i32x4.extend_low_i16x8_s (local.get $qv)))
              (local.set $hi (i32x4.extend_high_i16x8_s (local.get $qv)))
              (local.set $d0 (f64x2.add (local.get $d0)
                (f64x2.mul (f64x2.convert_low_i32x4_s (local.get $lo)) (local.get $xc))))
              (local.set $d1 (f64x2.add (local.get $d1)
                (f64x2.mul (f64x2.convert_low_i32x4_s
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $lo) (local.get $lo)))
                  (local.get $xc))))
              (local.set $d2 (f64x2.add (local.get $d2)
                (f64x2.mul (f64x2.convert_low_i32x4_s (local.get $hi)) (local.get $xc))))
              (local.set $d3 (f64x2.add (local.get $d3)
                (f64x2.mul (f64x2.convert_low_i32x4_s
                  (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $hi) (local.get $hi)))
                  (local.get $xc))))
              (local.set $q (i32.add (local.get $q) (i32.const 8)))
              (local.set $p (i32.add (local.get $p) (i32.const 4)))
              (br_if $columns (i32.lt_u (local.get $p) (local.get $gEnd))))
            ;; s += scale * d, the block's eight scales of this group
            (local.set $sc (v128.load (local.get $scales)))
            (local.set $s0 (f64x2.add (local.get $s0) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $sc)) (local.get $d0))))
            (local.set $s1 (f64x2.add (local.get $s1) (f64x2.mul (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $sc) (local.get $sc))) (local.get $d1))))
            (local.set $sc (v128.load offset=16 (local.get $scales)))
            (local.set $s2 (f64x2.add (local.get $s2) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $sc)) (local.get $d2))))
            (local.set $s3 (f64x2.add (local.get $s3) (f64x2.mul (f64x2.promote_low_f32x4
              (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $sc) (local.get $sc))) (local.get $d3))))
            (local.set $scales (i32.add (local.get $scales) (i32.const 32)))
            (br $groups)))
        ;; as in $matvec: whole blocks straight into out, the last partial one through scratch
        (local.set $dst
          (select (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 2))) (i32.const 0)
            (i32.ge_s (i32.sub (local.get $rows) (local.get $r)) (i32.const 8))))
        (v128.store (local.get $dst)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $s0)) (f32x4.demote_f64x2_zero (local.get $s1))))
        (v128.store offset=16 (local.get $dst)
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $s2)) (f32x4.demote_f64x2_zero (local.get $s3))))
        (if (i32.eqz (local.get $dst))
          (then
            (local.set $k (i32.const 0))
            (loop $tail
              (f32.store
                (i32.add (local.get $out) (i32.shl (i32.add (local.get $r) (local.get $k)) (i32.const 2)))
                (f32.load (i32.shl (local.get $k) (i32.const 2))))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $tail (i32.lt_s (i32.add (local.get $r) (local.get $k)) (local.get $rows))))))
        (local.set $r (i32.add (local.get $r) (i32.const 8)))
        (br $blocks))))

  ;; out[d] = sum over t < n of a[t] * v[t * stride + d], for d < len: the attention-weighted
  ;; sum of value rows (math.ts weightedRowSum). a [n]; v: rows of `stride` float64 (float32
  ;; values promoted exactly); out [len].
  ;; Four output elements at a time (lanes of $s0, $s1), each summed over t in order in double.
  (func $weightedRows (export "weighted_rows") (param $out i32) (param $a i32) (param $n i32) (param $v i32) (param $stride i32) (param $len i32)
    (local $d i32) (local $ap i32) (local $aEnd i32) (local $row i32) (local $strideBytes i32)
    (local $at v128) (local $s0 v128) (local $s1 v128) (local $s f64)
    (local.set $aEnd (i32.add (local.get $a) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $strideBytes (i32.shl (local.get $stride) (i32.const 3)))
    (block $fours
      (loop $four
        (br_if $fours (i32.gt_s (i32.add (local.get $d) (i32.const 4)) (local.get $len)))
        (local.set $s0 (v128.const i64x2 0 0))
        (local.set $s1 (v128.const i64x2 0 0))
        (local.set $ap (local.get $a))
        (local.set $row (i32.add (local.get $v) (i32.shl (local.get $d) (i32.const 3))))
        (if (i32.gt_s (local.get $n) (i32.const 0))
          (then
            (loop $positions
              (local.set $at (f64x2.splat (f64.promote_f32 (f32.load (local.get $ap)))))
              (local.set $s0 (f64x2.add (local.get $s0) (f64x2.mul (local.get $at) (v128.load (local.get $row)))))
              (local.set $s1 (f64x2.add (local.get $s1) (f64x2.mul (local.get $at) (v128.load offset=16 (local.get $row)))))
              (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
              (local.set $row (i32.add (local.get $row) (local.get $strideBytes)))
              (br_if $positions (i32.lt_u (local.get $ap) (local.get $aEnd))))))
        (v128.store (i32.add (local.get $out) (i32.shl (local.get $d) (i32.const 2)))
          (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
            (f32x4.demote_f64x2_zero (local.get $s0)) (f32x4.demote_f64x2_zero (local.get $s1))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (br $four)))
    ;; the last len % 4 elements one at a time
    (block $ones
      (loop $one
        (br_if $ones (i32.ge_s (local.get $d) (local.get $len)))
        (local.set $s (f64.const 0))
        (local.set $ap (local.get $a))
        (local.set $row (i32.add (local.get $v) (i32.shl (local.get $d) (i32.const 3))))
        (if (i32.gt_s (local.get $n) (i32.const 0))
          (then
            (loop $positions1
              (local.set $s (f64.add (local.get $s)
                (f64.mul (f64.promote_f32 (f32.load (local.get $ap))) (f64.load (local.get $row)))))
              (local.set $ap (i32.add (local.get $ap) (i32.const 4)))
              (local.set $row (i32.add (local.get $row) (local.get $strideBytes)))
              (br_if $positions1 (i32.lt_u (local.get $ap) (local.get $aEnd))))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $d) (i32.const 2))) (f32.demote_f64 (local.get $s)))
        (local.set $d (i32.add (local.get $d) (i32.const 1)))
        (br $one))))

  ;; e^x rounded to float32: math.ts expf, operation for operation. x = (32m + j) ln2/32 + r,
  ;; e^x = 2^m * 2^(j/32) * e^r with e^r by its Taylor series to r^5.
  (func $expf (export "expf") (param $x f64) (result f32)
    (local $k f64) (local $ki i32) (local $r f64) (local $er f64)
    (if (i32.eqz (i32.and (f64.gt (local.get $x) (f64.const -104)) (f64.lt (local.get $x) (f64.const 89))))
      (then (return (f32.demote_f64 (call $exp (local.get $x))))))
    ;; k = floor(x * 32/ln2 + 0.5)
    (local.set $k (f64.floor (f64.add (f64.mul (local.get $x) (f64.const 0x1.71547652b82fep5)) (f64.const 0.5))))
    ;; r = x - k * ln2_hi/32 - k * ln2_lo/32
    (local.set $r (f64.sub
      (f64.sub (local.get $x) (f64.mul (local.get $k) (f64.const 0x1.62e42fee00000p-6)))
      (f64.mul (local.get $k) (f64.const 0x1.a39ef35793c76p-38))))
    ;; er = 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r / 120))))
    (local.set $er (f64.add (f64.const 1) (f64.mul (local.get $r)
      (f64.add (f64.const 1) (f64.mul (local.get $r)
        (f64.add (f64.const 0.5) (f64.mul (local.get $r)
          (f64.add (f64.const 0x1.5555555555555p-3) (f64.mul (local.get $r)
            (f64.add (f64.const 0x1.5555555555555p-5) (f64.mul (local.get $r) (f64.const 0x1.1111111111111p-7))))))))))))
    (local.set $ki (i32.trunc_f64_s (local.get $k)))
    ;; er * 2^(j/32) * 2^m, with j = k & 31 from the table and 2^m built from its exponent bits
    (f32.demote_f64 (f64.mul
      (f64.mul (local.get $er) (f64.load offset=64 (i32.shl (i32.and (local.get $ki) (i32.const 31)) (i32.const 3))))
      (f64.reinterpret_i64 (i64.shl
        (i64.extend_i32_s (i32.add (i32.shr_s (local.get $ki) (i32.const 5)) (i32.const 1023)))
        (i64.const 52))))))

  ;; expf on both lanes of x (f64x2): (expf(x0), expf(x1), 0, 0) as f32x4. The same operations
  ;; as $expf, two lanes at a time; when a lane is outside (-104, 89) (or NaN), lane by lane.
  (func $expf2 (param $x v128) (result v128)
    (local $k v128) (local $ki v128) (local $r v128) (local $er v128) (local $frac v128)
    (if (i32.eqz (i64x2.all_true (v128.and
          (f64x2.gt (local.get $x) (v128.const f64x2 -104 -104))
          (f64x2.lt (local.get $x) (v128.const f64x2 89 89)))))
      (then
        (return (f32x4.replace_lane 1
          (f32x4.splat (call $expf (f64x2.extract_lane 0 (local.get $x))))
          (call $expf (f64x2.extract_lane 1 (local.get $x)))))))
    (local.set $k (f64x2.floor (f64x2.add
      (f64x2.mul (local.get $x) (v128.const f64x2 0x1.71547652b82fep5 0x1.71547652b82fep5))
      (v128.const f64x2 0.5 0.5))))
    (local.set $r (f64x2.sub
      (f64x2.sub (local.get $x) (f64x2.mul (local.get $k) (v128.const f64x2 0x1.62e42fee00000p-6 0x1.62e42fee00000p-6)))
      (f64x2.mul (local.get $k) (v128.const f64x2 0x1.a39ef35793c76p-38 0x1.a39ef35793c76p-38))))
    (local.set $er (f64x2.add (v128.const f64x2 1 1) (f64x2.mul (local.get $r)
      (f64x2.add (v128.const f64x2 1 1) (f64x2.mul (local.get $r)
        (f64x2.add (v128.const f64x2 0.5 0.5) (f64x2.mul (local.get $r)
          (f64x2.add (v128.const f64x2 0x1.5555555555555p-3 0x1.5555555555555p-3) (f64x2.mul (local.get $r)
            (f64x2.add (v128.const f64x2 0x1.5555555555555p-5 0x1.5555555555555p-5)
              (f64x2.mul (local.get $r) (v128.const f64x2 0x1.1111111111111p-7 0x1.1111111111111p-7))))))))))))
    ;; k as int32 in lanes 0 and 1; 2^(j/32) of each lane from the table
    (local.set $ki (i32x4.trunc_sat_f64x2_s_zero (local.get $k)))
    (local.set $frac (f64x2.replace_lane 1
      (f64x2.splat (f64.load offset=64 (i32.shl (i32.and (i32x4.extract_lane 0 (local.get $ki)) (i32.const 31)) (i32.const 3))))
      (f64.load offset=64 (i32.shl (i32.and (i32x4.extract_lane 1 (local.get $ki)) (i32.const 31)) (i32.const 3)))))
    (f32x4.demote_f64x2_zero (f64x2.mul
      (f64x2.mul (local.get $er) (local.get $frac))
      ;; 2^m, m = k >> 5, from its exponent bits
      (i64x2.shl
        (i64x2.extend_low_i32x4_s (i32x4.add (i32x4.shr_s (local.get $ki) (i32.const 5)) (v128.const i32x4 1023 1023 1023 1023)))
        (i32.const 52)))))

  ;; x[t] = x[t] / scale, then softmax over x[0, n), n >= 1: math.ts softmax after the
  ;; scaling loop of HeadGroup.attend. Divisions in double, rounded to float32; the sum of
  ;; the exponentials in order in double. Two or four elements at a time where the result
  ;; does not depend on it (NaN-free inputs: the maximum is the same whichever lane finds it).
  (func $scaledSoftmax (export "scaled_softmax") (param $x i32) (param $n i32) (param $scale f64)
    (local $p i32) (local $end i32) (local $end4 i32) (local $end2 i32) (local $v f32) (local $max f32)
    (local $vs v128) (local $maxs v128) (local $e v128) (local $sum f64) (local $total f64)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end4 (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
    (local.set $end2 (i32.add (local.get $x) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    ;; scale, and find the maximum: four at a time, lanes keeping max = (max < v) ? v : max
    (local.set $maxs (v128.const f32x4 -inf -inf -inf -inf))
    (local.set $p (local.get $x))
    (block $scaled4
      (loop $scaling4
        (br_if $scaled4 (i32.ge_u (local.get $p) (local.get $end4)))
        (local.set $vs (v128.load (local.get $p)))
        (local.set $vs (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.div (f64x2.promote_low_f32x4 (local.get $vs)) (f64x2.splat (local.get $scale))))
          (f32x4.demote_f64x2_zero (f64x2.div
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 8 9 10 11 12 13 14 15 (local.get $vs) (local.get $vs)))
            (f64x2.splat (local.get $scale))))))
        (v128.store (local.get $p) (local.get $vs))
        (local.set $maxs (f32x4.pmax (local.get $maxs) (local.get $vs)))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (br $scaling4)))
    (local.set $max (f32.const -inf))
    (local.set $max (select (f32x4.extract_lane 0 (local.get $maxs)) (local.get $max) (f32.lt (local.get $max) (f32x4.extract_lane 0 (local.get $maxs)))))
    (local.set $max (select (f32x4.extract_lane 1 (local.get $maxs)) (local.get $max) (f32.lt (local.get $max) (f32x4.extract_lane 1 (local.get $maxs)))))
    (local.set $max (select (f32x4.extract_lane 2 (local.get $maxs)) (local.get $max) (f32.lt (local.get $max) (f32x4.extract_lane 2 (local.get $maxs)))))
    (local.set $max (select (f32x4.extract_lane 3 (local.get $maxs)) (local.get $max) (f32.lt (local.get $max) (f32x4.extract_lane 3 (local.get $maxs)))))
    (block $scaled
      (loop $scaling
        (br_if $scaled (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $v (f32.demote_f64 (f64.div (f64.promote_f32 (f32.load (local.get $p))) (local.get $scale))))
        (f32.store (local.get $p) (local.get $v))
        (local.set $max (select (local.get $v) (local.get $max) (f32.lt (local.get $max) (local.get $v))))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (br $scaling)))
    ;; x[t] = expf(x[t] - max), two at a time; sum += x[t] in order
    (local.set $p (local.get $x))
    (block $exps2
      (loop $exp2
        (br_if $exps2 (i32.ge_u (local.get $p) (local.get $end2)))
        (local.set $e (call $expf2 (f64x2.sub
          (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p)))
          (f64x2.splat (f64.promote_f32 (local.get $max))))))
        (v128.store64_lane 0 (local.get $p) (local.get $e))
        (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (f32x4.extract_lane 0 (local.get $e)))))
        (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (f32x4.extract_lane 1 (local.get $e)))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $exp2)))
    (if (i32.lt_u (local.get $p) (local.get $end))
      (then
        (local.set $v (call $expf (f64.sub (f64.promote_f32 (f32.load (local.get $p))) (f64.promote_f32 (local.get $max)))))
        (f32.store (local.get $p) (local.get $v))
        (local.set $sum (f64.add (local.get $sum) (f64.promote_f32 (local.get $v))))))
    ;; x[t] = x[t] / total, total = sum rounded to float32; two at a time
    (local.set $total (f64.promote_f32 (f32.demote_f64 (local.get $sum))))
    (local.set $p (local.get $x))
    (block $normalised2
      (loop $normalising2
        (br_if $normalised2 (i32.ge_u (local.get $p) (local.get $end2)))
        (v128.store64_lane 0 (local.get $p) (f32x4.demote_f64x2_zero (f64x2.div
          (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p))) (f64x2.splat (local.get $total)))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $normalising2)))
    (if (i32.lt_u (local.get $p) (local.get $end))
      (then
        (f32.store (local.get $p) (f32.demote_f64 (f64.div (f64.promote_f32 (f32.load (local.get $p))) (local.get $total)))))))

  ;; SwiGLU gate: h1[i] = silu(h1[i]) * h3[i], silu(v) = v / (1 + e^-v): math.ts swiglu, with
  ;; each step rounded to float32 as there; two elements at a time. h1, h3 [n].
  (func (export "swiglu") (param $h1 i32) (param $h3 i32) (param $n i32)
    (local $end i32) (local $end2 i32) (local $v v128) (local $t v128) (local $s f64)
    (local.set $end (i32.add (local.get $h1) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $end2 (i32.add (local.get $h1) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    (block $pairsDone
      (loop $pairs
        (br_if $pairsDone (i32.ge_u (local.get $h1) (local.get $end2)))
        (local.set $v (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $h1))))
        ;; t = fround(1 + expf(-v)); t = fround(1 / t); t = fround(v * t)
        (local.set $t (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero
          (f64x2.add (v128.const f64x2 1 1) (f64x2.promote_low_f32x4 (call $expf2 (f64x2.neg (local.get $v))))))))
        (local.set $t (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.div (v128.const f64x2 1 1) (local.get $t)))))
        (local.set $t (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero (f64x2.mul (local.get $v) (local.get $t)))))
        (v128.store64_lane 0 (local.get $h1) (f32x4.demote_f64x2_zero
          (f64x2.mul (local.get $t) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $h3))))))
        (local.set $h1 (i32.add (local.get $h1) (i32.const 8)))
        (local.set $h3 (i32.add (local.get $h3) (i32.const 8)))
        (br $pairs)))
    (if (i32.lt_u (local.get $h1) (local.get $end))
      (then
        (local.set $s (f64.promote_f32 (f32.load (local.get $h1))))
        (local.set $s (f64.promote_f32 (f32.demote_f64 (f64.add (f64.const 1) (f64.promote_f32 (call $expf (f64.neg (local.get $s))))))))
        (local.set $s (f64.promote_f32 (f32.demote_f64 (f64.div (f64.const 1) (local.get $s)))))
        (local.set $s (f64.promote_f32 (f32.demote_f64 (f64.mul (f64.promote_f32 (f32.load (local.get $h1))) (local.get $s)))))
        (f32.store (local.get $h1) (f32.demote_f64 (f64.mul (local.get $s) (f64.promote_f32 (f32.load (local.get $h3)))))))))

  ;; One query head's causal attention over positions 0..n-1 (n >= 1): HeadGroup.attend.
  ;; keys: K_j [context, hs] in row-block layout (rows are positions); values: V_j [context, hs]
  ;; row-major float64; q [hs]; att [n] scratch; out [hs].
  ;;   att = softmax(K_j q / scale); out = att^T V_j
  (func (export "attend_head") (param $keys i32) (param $values i32) (param $q i32) (param $att i32) (param $out i32)
      (param $n i32) (param $hs i32) (param $scale f64)
    (call $matvec (local.get $keys) (local.get $q) (local.get $att) (local.get $n) (local.get $hs))
    (call $scaledSoftmax (local.get $att) (local.get $n) (local.get $scale))
    (call $weightedRows (local.get $out) (local.get $att) (local.get $n) (local.get $values) (local.get $hs) (local.get $hs)))
)
