# Sourced by the research scripts: sets G GL Q QL (gallery and query images
# and labels) for data set $DS under $ROOT; returns 1 for an unknown name.
# mnist: the canonical MNIST-10k split; fashion: Fashion-MNIST 60k / 10k;
# fsqrt / fsqrtblur: Fashion with sqrt-compressed (and blurred) intensities,
# made by hand with adhoc/make-fsqrt.py.
case $DS in
  mnist) D=$ROOT/data/mnist; G=$D/gallery-images.idx3-ubyte; GL=$D/gallery-labels.idx1-ubyte
         Q=$D/query-images.idx3-ubyte; QL=$D/query-labels.idx1-ubyte ;;
  fashion) D=$ROOT/data/fashion; G=$D/train-images-idx3-ubyte.gz; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte.gz; QL=$D/t10k-labels-idx1-ubyte.gz ;;
  fsqrt) D=$ROOT/out/research/data-fsqrt; G=$D/train-images-idx3-ubyte; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte; QL=$D/t10k-labels-idx1-ubyte.gz ;;
  fsqrtblur) D=$ROOT/out/research/data-fsqrtblur; G=$D/train-images-idx3-ubyte; GL=$D/train-labels-idx1-ubyte.gz
         Q=$D/t10k-images-idx3-ubyte; QL=$D/t10k-labels-idx1-ubyte.gz ;;
  *) return 1 ;;
esac
