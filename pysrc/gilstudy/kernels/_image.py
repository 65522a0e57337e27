"""The image the mandelbrot kernels return, made without numpy where numpy cannot be imported
(an isolated subinterpreter: numpy's extension refuses to load there). Both kernels fill an
array.array of uint32 pixels; as_image() makes it the numpy array, or where numpy is not
to be had a PortableImage, which pickles into that same numpy array on the other side.
"""

import array
import pickle

__all__ = ["UINT32_CODE", "new_pixels", "as_image", "numpy_or_none", "PortableImage",
           "uint32_image"]

# The array.array type code of a 32-bit unsigned int on this platform.
UINT32_CODE = next(code for code in "ILH" if array.array(code).itemsize == 4)

# The numpy module once imported, False once it could not be (looked up once per interpreter:
# a subinterpreter has its own copy of this module).
_numpy = None


def numpy_or_none():
    """The numpy module, or None where it cannot be imported (an isolated subinterpreter);
    the import is tried once."""
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError:
            _numpy = False
        else:
            _numpy = numpy
    return _numpy or None


def new_pixels(rows: int, width: int) -> array.array:
    """A zeroed array.array of ``rows`` x ``width`` uint32 pixels, for a compiled kernel to
    fill through the buffer protocol. The size is computed with Python ints, so a product
    past any C integer raises (OverflowError, MemoryError) instead of wrapping around."""
    return array.array(UINT32_CODE, bytes(4 * rows * width))


def as_image(pixels, rows: int, width: int):
    """``pixels`` (uint32 values row after row, in anything with the buffer protocol) as the
    numpy uint32 array of shape (rows, width), sharing its memory when it is writable and
    copying it when not; where numpy cannot be imported, as a PortableImage."""
    numpy = numpy_or_none()
    if numpy is None:
        if not isinstance(pixels, array.array):
            pixels = array.array(UINT32_CODE, bytes(pixels))
        return PortableImage(pixels, rows, width)
    image = numpy.frombuffer(pixels, dtype=numpy.uint32).reshape(rows, width)
    return image if image.flags.writeable else image.copy()


def uint32_image(data, rows: int, width: int):
    """What a pickled PortableImage loads as: see as_image()."""
    return as_image(data, rows, width)


class PortableImage:
    """A mandelbrot image where numpy cannot be imported: ``shape`` (rows, width) and
    ``pixels``, an array.array of the uint32 escape counts, row after row.

    Pickled, it loads as the numpy uint32 array of that shape wherever numpy can be
    imported (and as a PortableImage again where it cannot), so a result that crosses from
    a subinterpreter to its caller is the same array every other execution model gives. With
    pickle protocol 5 the pixels travel as an out-of-band buffer, without a copy. A channel
    that restricts unpickling must allow ``gilstudy.kernels._image.uint32_image``.
    """

    def __init__(self, pixels: array.array, rows: int, width: int):
        if len(pixels) != rows * width:
            raise ValueError(f"PortableImage: {len(pixels)} pixels do not make {rows} rows of "
                             f"{width}")
        self.pixels = pixels
        self.shape = (rows, width)

    def tolist(self) -> list[list[int]]:
        """The pixels as a list of rows, as numpy's ndarray.tolist() gives them."""
        rows, width = self.shape
        return [self.pixels[row * width:(row + 1) * width].tolist() for row in range(rows)]

    def __eq__(self, other) -> bool:
        if not isinstance(other, PortableImage):
            return NotImplemented
        return self.shape == other.shape and self.pixels == other.pixels

    def __reduce_ex__(self, protocol):
        data = pickle.PickleBuffer(self.pixels) if protocol >= 5 else self.pixels.tobytes()
        return uint32_image, (data, *self.shape)

    def __repr__(self) -> str:
        return f"PortableImage(<{self.shape[0]} x {self.shape[1]} uint32>)"
