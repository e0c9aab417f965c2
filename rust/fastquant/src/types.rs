//! Every ggml tensor type as one table.
//!
//! The table mirrors ggml's `type_traits` (`ggml.c`): the numeric id written into GGUF files, the
//! name ggml prints, the number of elements a block holds and its size in bytes. It lists types
//! fastquant cannot (yet) encode so that files naming them can still be described; whether a type
//! has a codec here is answered by [`QuantType::can_quantize`] and [`QuantType::can_dequantize`].

use crate::error::{Error, Result};

/// Static facts about one ggml type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type this row describes.
    pub qtype: QuantType,
    /// ggml's `enum ggml_type` value, as stored in GGUF tensor infos.
    pub id: u32,
    /// ggml's name in upper case (`Q4_K`, `F16`), as llama.cpp prints it.
    pub name: &'static str,
    /// Elements per block (1 for plain element types).
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// fastquant can write this type from floats.
    pub can_quantize: bool,
    /// fastquant can read this type back to floats.
    pub can_dequantize: bool,
}

macro_rules! quant_types {
    ($( $variant:ident = $id:literal, $name:literal, $elems:literal, $bytes:literal, $q:literal, $dq:literal; )*) => {
        /// A ggml tensor type. The discriminant is ggml's type id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        #[allow(non_camel_case_types)]
        pub enum QuantType {
            $(
                #[doc = concat!("ggml's `", $name, "` (id ", stringify!($id), "): ", stringify!($elems),
                                " elements in ", stringify!($bytes), " bytes per block.")]
                $variant = $id,
            )*
        }

        /// The one table of type facts, in id order.
        pub const TYPE_TABLE: &[TypeInfo] = &[
            $( TypeInfo {
                qtype: QuantType::$variant,
                id: $id,
                name: $name,
                block_elems: $elems,
                block_bytes: $bytes,
                can_quantize: $q,
                can_dequantize: $dq,
            }, )*
        ];
    };
}

// id, name, elements per block, bytes per block, quantize here, dequantize here.
// Ids 4, 5, 31-33 and 36-38 were removed from ggml (now runtime repacking) and are not types.
quant_types! {
    F32 = 0, "F32", 1, 4, true, true;
    F16 = 1, "F16", 1, 2, true, true;
    Q4_0 = 2, "Q4_0", 32, 18, true, true;
    Q4_1 = 3, "Q4_1", 32, 20, true, true;
    Q5_0 = 6, "Q5_0", 32, 22, true, true;
    Q5_1 = 7, "Q5_1", 32, 24, true, true;
    Q8_0 = 8, "Q8_0", 32, 34, true, true;
    Q8_1 = 9, "Q8_1", 32, 36, true, true;
    Q2_K = 10, "Q2_K", 256, 84, true, true;
    Q3_K = 11, "Q3_K", 256, 110, true, true;
    Q4_K = 12, "Q4_K", 256, 144, true, true;
    Q5_K = 13, "Q5_K", 256, 176, true, true;
    Q6_K = 14, "Q6_K", 256, 210, true, true;
    Q8_K = 15, "Q8_K", 256, 292, true, true;
    IQ2_XXS = 16, "IQ2_XXS", 256, 66, false, true;
    IQ2_XS = 17, "IQ2_XS", 256, 74, false, true;
    IQ3_XXS = 18, "IQ3_XXS", 256, 98, false, true;
    IQ1_S = 19, "IQ1_S", 256, 50, false, true;
    IQ4_NL = 20, "IQ4_NL", 32, 18, true, true;
    IQ3_S = 21, "IQ3_S", 256, 110, false, true;
    IQ2_S = 22, "IQ2_S", 256, 82, false, true;
    IQ4_XS = 23, "IQ4_XS", 256, 136, true, true;
    I8 = 24, "I8", 1, 1, false, false;
    I16 = 25, "I16", 1, 2, false, false;
    I32 = 26, "I32", 1, 4, false, false;
    I64 = 27, "I64", 1, 8, false, false;
    F64 = 28, "F64", 1, 8, false, false;
    IQ1_M = 29, "IQ1_M", 256, 56, false, true;
    BF16 = 30, "BF16", 1, 2, true, true;
    TQ1_0 = 34, "TQ1_0", 256, 54, true, true;
    TQ2_0 = 35, "TQ2_0", 256, 66, true, true;
    MXFP4 = 39, "MXFP4", 32, 17, true, true;
    NVFP4 = 40, "NVFP4", 64, 36, false, false;
    Q1_0 = 41, "Q1_0", 128, 18, false, false;
    Q2_0 = 42, "Q2_0", 64, 18, false, false;
}

impl QuantType {
    /// This type's row of [`TYPE_TABLE`].
    pub fn info(self) -> &'static TypeInfo {
        // The table is generated in declaration order, so a linear scan over ~35 entries is the
        // whole cost; callers do this once per call, never per block.
        TYPE_TABLE.iter().find(|info| info.qtype == self).expect("every QuantType variant has a table row")
    }

    /// The type with ggml id `id`.
    pub fn from_id(id: u32) -> Result<Self> {
        TYPE_TABLE.iter().find(|info| info.id == id).map(|info| info.qtype).ok_or(Error::UnknownTypeId(id))
    }

    /// The type named `name`, in any letter case (`q4_0`, `Q4_0`, `bf16`).
    pub fn from_name(name: &str) -> Result<Self> {
        TYPE_TABLE
            .iter()
            .find(|info| info.name.eq_ignore_ascii_case(name))
            .map(|info| info.qtype)
            .ok_or_else(|| Error::UnknownTypeName(name.to_owned()))
    }

    /// The ggml type id, as GGUF files store it.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The name ggml prints (`"Q4_K"`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Elements per block (1 for the plain float and integer types).
    pub fn block_elems(self) -> usize {
        self.info().block_elems
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.info().block_bytes
    }

    /// Whether [`crate::quantize`] can encode this type.
    pub fn can_quantize(self) -> bool {
        self.info().can_quantize
    }

    /// Whether [`crate::dequantize`] (and so matmul and attention) can decode this type.
    pub fn can_dequantize(self) -> bool {
        self.info().can_dequantize
    }

    /// Bytes needed for `n_elems` elements; an error when `n_elems` is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, n_elems: usize) -> Result<usize> {
        let info = self.info();
        if !n_elems.is_multiple_of(info.block_elems) {
            return Err(Error::BlockMultiple { qtype: info.name, len: n_elems, block: info.block_elems });
        }
        (n_elems / info.block_elems).checked_mul(info.block_bytes).ok_or(Error::TooLarge(n_elems))
    }

    /// Storage cost in bits per weight.
    pub fn bits_per_weight(self) -> f64 {
        let info = self.info();
        (info.block_bytes * 8) as f64 / info.block_elems as f64
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for QuantType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip_and_are_unique() {
        for (i, info) in TYPE_TABLE.iter().enumerate() {
            assert_eq!(info.qtype.id(), info.id);
            assert_eq!(QuantType::from_id(info.id).unwrap(), info.qtype);
            assert_eq!(QuantType::from_name(&info.name.to_lowercase()).unwrap(), info.qtype);
            for other in &TYPE_TABLE[i + 1..] {
                assert!(other.id > info.id, "table must be in strictly increasing id order");
                assert_ne!(other.name, info.name);
            }
        }
    }

    #[test]
    fn removed_and_unknown_ids_are_errors() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
            assert!(QuantType::from_id(id).is_err(), "id {id}");
        }
        assert!(QuantType::from_name("q4_2").is_err());
    }

    #[test]
    fn row_bytes_checks_block_multiple() {
        assert_eq!(QuantType::Q4_0.row_bytes(64).unwrap(), 36);
        assert!(QuantType::Q4_0.row_bytes(33).is_err());
        assert_eq!(QuantType::F16.row_bytes(3).unwrap(), 6);
        assert_eq!(QuantType::Q4_0.bits_per_weight(), 4.5);
    }
}
