"""Images in, embeddings out: the dataset registry (`datasets`), image files and splits (`images`),
the UCF-101 frame reader (`ucf101`), open_clip model loading (`models`) and image encoding, local
(`encode`) and on a Ray cluster (`ray_embed`), and laying a clustering out as folders of images
(`export`).

May import the top-level modules of laic_core; never `method`, `scoring`, `baselines` or `views`.
"""
