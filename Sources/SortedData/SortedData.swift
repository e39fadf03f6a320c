// SortedData: tokenizers, datasets, prompt templates and the sharded sampler.
