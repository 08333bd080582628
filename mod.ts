/**
 * An LLM built from scratch on WebGPU, in TypeScript on Deno: hand-written WGSL kernels under a
 * small autograd engine, GPT-2 layers, a from-scratch byte-level BPE trainer, and the pipeline
 * from raw English text to a model one can chat with.
 *
 * @example
 * ```ts
 * import { acquireGpu, matmul } from "./mod.ts";
 *
 * // out (2, 2) = A (2, 3) · B (3, 2), on whatever WebGPU adapter the machine has.
 * const gpu = await acquireGpu();
 * const a = gpu.upload(new Float32Array([1, 2, 3, 4, 5, 6]));
 * const b = gpu.upload(new Float32Array([1, 0, 0, 1, 1, 1]));
 * const out = gpu.acquire(4 * 4);
 * await matmul(gpu, out, a, b, { m: 2, n: 2, k: 3 });
 * console.log(await gpu.readF32(out, 4)); // Float32Array [4, 5, 10, 11]
 * ```
 *
 * The pipeline from text to a chat model is a function per stage, from `prepareDataset` to
 * `testInstruct`; `runMainJob` runs them all within a time budget (`deno task train`).
 *
 * @module
 */

// Device: the WebGPU adapter and device, buffers, and reading results back.
export {
  acquireGpu,
  type AcquireOptions,
  type AdapterSummary,
  type Binding,
  type BindingKind,
  type BufferAt,
  bufferOf,
  type BufferWindow,
  bufferWindow,
  byteOffsetOf,
  DeviceLostError,
  type DispatchTime,
  Gpu,
  type GpuFloats,
  type GpuProfile,
  type GpuTiming,
  grid2d,
  type Kernel,
  KernelCompileError,
  type KernelConstants,
  KernelValidationError,
  NoAdapterError,
  sizeClass,
  uniforms,
} from "./kernels/device.ts";

// Kernels: one WGSL kernel family per file, each launcher beside its CPU reference.
export { type ElementwiseConstants } from "./kernels/_parts.ts";
export { accumulate, accumulateCpu, accumulateKernel } from "./kernels/accumulate.ts";
export {
  type AdamWConstants,
  type AdamWHyperparameters,
  adamwKernel,
  type AdamWOptions,
  adamwScalarKernel,
  type AdamWSettings,
  type AdamWTensor,
  type AdamWTensorsConstants,
  adamwTensorsKernel,
  adamwUpdate,
  adamwUpdateCpu,
  adamwUpdateTensors,
  type ParameterRange,
} from "./kernels/adamw.ts";
export {
  attentionBackward,
  attentionBackwardCpu,
  attentionBackwardDotKernel,
  attentionBackwardKeyValueKernel,
  attentionBackwardQueryKernel,
  type AttentionConstants,
  attentionForward,
  attentionForwardCpu,
  attentionForwardKernel,
  type AttentionGradientBuffers,
  type AttentionInputBuffers,
  type AttentionOptions,
  type AttentionTiles,
  CPU_TEXTURE_TILES,
  CPU_TILES,
  defaultTiles,
  gpuTiles,
  MAX_HEAD_SIZE,
  type TextureTile,
  type TextureTiles,
} from "./kernels/attention.ts";
export {
  attentionDecode,
  type AttentionDecodeConstants,
  attentionDecodeCpu,
  attentionDecodeKernel,
  type AttentionDecodeOptions,
  decodeLanes,
  type DecodeShape,
  type KvCacheBuffers,
  kvCacheWrite,
  kvCacheWriteCpu,
  kvCacheWriteKernel,
} from "./kernels/attention_decode.ts";
export {
  type HeadLayoutConstants,
  type HeadLayoutOptions,
  headSizeOf,
  mergeHeadsBackward,
  mergeHeadsBackwardCpu,
  mergeHeadsForward,
  mergeHeadsForwardCpu,
  mergeHeadsKernel,
  splitHeadsBackward,
  splitHeadsBackwardCpu,
  splitHeadsForward,
  splitHeadsForwardCpu,
  splitHeadsKernel,
} from "./kernels/attention_layout.ts";
export {
  attentionNaiveBackward,
  attentionNaiveForward,
  causalMatmulKernel,
  causalMatmulTransposedKernel,
  causalScoresKernel,
  causalSoftmaxBackwardKernel,
  causalSoftmaxKernel,
  type NaiveAttentionOptions,
  type NaiveConstants,
} from "./kernels/attention_naive.ts";
export {
  biasGrad,
  type BiasGradConstants,
  biasGradCpu,
  biasGradFinalKernel,
  biasGradKernel,
  biasGradPartialsKernel,
  type BiasGradPassConstants,
} from "./kernels/bias_grad.ts";
export {
  countedPositions,
  crossEntropy,
  type CrossEntropyConstants,
  crossEntropyCpu,
  crossEntropyKernelInPlace,
  crossEntropyKernelLossOnly,
  crossEntropyKernelSeparate,
  type CrossEntropyOptions,
} from "./kernels/cross_entropy.ts";
export {
  embeddingBackward,
  embeddingBackwardCpu,
  embeddingBackwardPositionKernel,
  embeddingBackwardTokenKernel,
  type EmbeddingConstants,
  embeddingForward,
  embeddingForwardCpu,
  embeddingForwardKernel,
  type EmbeddingTokenConstants,
  groupPositionsByToken,
  type TokenGroups,
} from "./kernels/embedding.ts";
export {
  GELU_WGSL,
  geluBackward,
  geluBackwardCpu,
  geluBackwardInPlaceKernel,
  geluBackwardKernel,
  geluForward,
  geluForwardCpu,
  geluForwardKernel,
  geluScalar,
  geluWgsl,
} from "./kernels/gelu.ts";
export {
  globalNorm,
  globalNormCpu,
  type GradNormConstants,
  gradNormFinalKernel,
  type GradNormPartialsConstants,
  gradNormPartialsKernel,
  gradNormPartialsTensorsKernel,
  type TensorRange,
} from "./kernels/grad_norm.ts";
export {
  type FiniteCheckConstants,
  poisonNormKernel,
  poisonNormUnlessFinite,
  poisonNormUnlessFiniteCpu,
} from "./kernels/finite_check.ts";
export {
  LAYERNORM_EPS,
  layernormBackward,
  layernormBackwardCpu,
  layernormBackwardInputKernel,
  layernormBackwardInputRowsKernel,
  layernormBackwardParamsKernel,
  layernormBackwardPartialsKernel,
  type LayernormConstants,
  layernormForward,
  type LayernormForwardBuffers,
  type LayernormForwardConstants,
  layernormForwardCpu,
  layernormForwardKernel,
  layernormForwardRowsKernel,
  type LayernormOptions,
  type LayernormPerRow,
  residualLayernormForward,
  residualLayernormForwardCpu,
} from "./kernels/layernorm.ts";
export {
  linearBackward,
  type LinearBackwardBuffers,
  linearBackwardCpu,
  linearForward,
  type LinearForwardBuffers,
  linearForwardCpu,
  type LinearOptions,
  matmul,
  MATMUL_TILE_CPU,
  type MatmulConstants,
  matmulCpu,
  matmulKernel,
  type MatmulLimits,
  type MatmulOptions,
  type MatmulShape,
  type MatmulTile,
  matmulTile,
} from "./kernels/matmul.ts";
export {
  matmulNaive,
  type MatmulNaiveConstants,
  matmulNaiveKernel,
} from "./kernels/matmul_naive.ts";
export {
  type MuonConstants,
  muonInverseNormKernel,
  muonInverseNorms,
  muonInverseNormsCpu,
  muonMomentum,
  muonMomentumCpu,
  type MuonMomentumHyperparameters,
  muonMomentumKernel,
  muonPolynomial,
  muonPolynomialCpu,
  muonPolynomialKernel,
  muonScale,
  muonScaleCpu,
  muonScaleKernel,
  muonUpdate,
  muonUpdateCpu,
  type MuonUpdateHyperparameters,
  muonUpdateKernel,
  type NewtonSchulzCoefficients,
} from "./kernels/muon.ts";
export {
  residualBackward,
  residualBackwardCpu,
  residualBackwardKernel,
  residualForward,
  residualForwardCpu,
  residualForwardKernel,
} from "./kernels/residual.ts";
export { type Floats } from "./kernels/types.ts";

// Engine and model: tensors on a tape, the ops, GPT-2, optimizers, checkpoints, generation.
export {
  type AccumulatedGradients,
  accumulatedStep,
  type AccumulatedStepResult,
  accumulateGradients,
  type StepOptimizer,
} from "./nn/accumulated_step.ts";
export { alignUp, arenaAlignment, type ArenaEntry, ParameterArena } from "./nn/arena.ts";
export {
  type BatchLoss,
  countedTargets,
  meanLoss,
  type MicroBatch,
  uploadBatch,
  uploadTokens,
} from "./nn/batch.ts";
export {
  checkedStep,
  type CheckedValue,
  NonFiniteStepError,
  type NormClippedOptimizer,
  recordCheckedStep,
  type RecordedStep,
} from "./nn/checked_step.ts";
export {
  type CheckpointInfo,
  type CheckpointWeights,
  loadCheckpoint,
  type LoadedCheckpoint,
  NonFiniteCheckpointError,
  parseCheckpoint,
  previousCheckpointPath,
  readCheckpoint,
  saveCheckpoint,
  type SaveCheckpointOptions,
} from "./nn/checkpoint.ts";
export {
  checkContextLength,
  GPT2_PRESETS,
  type GPT2Config,
  type GPT2ParameterCount,
  gpt2ParameterCount,
  MAX_CONTEXT_LENGTH,
  MAX_PARAMETERS,
  validateConfig,
  validHeadCounts,
} from "./nn/config.ts";
export {
  generateBatch,
  type GenerateBatchOptions,
  type GenerateOptions,
  generateTokens,
  generateTokensUncached,
  type Guidance,
  type PromptCut,
  promptCutWarning,
} from "./nn/generate.ts";
export {
  type CachedStep,
  GPT2,
  gpt2ArenaOrder,
  gpt2ParameterSpecs,
  growVocabulary,
  type ParameterSpec,
} from "./nn/gpt2.ts";
export { cachedSelfAttention, KvCache } from "./nn/kv_cache.ts";
export {
  DEFAULT_MUON,
  type MatrixStack,
  Muon,
  muonParameterNames,
  type MuonScaleRule,
  type MuonSettings,
  muonStepCpu,
  muonUpdateScale,
  NEWTON_SCHULZ_5,
  newtonSchulz,
  newtonSchulzCpu,
  type NewtonSchulzSettings,
} from "./nn/muon.ts";
export { MuonAdamW, type OptimizerKind } from "./nn/muon_adamw.ts";
export {
  add,
  causalSelfAttention,
  crossEntropyLoss,
  embed,
  gelu,
  layernorm,
  linear,
  linearGelu,
  type LossTargets,
  residualLayernorm,
  type TokenBatch,
} from "./nn/ops.ts";
export { AdamW, GPT_ADAMW } from "./nn/optimizer.ts";
export { Random } from "./nn/random.ts";
export {
  CHECKSUM_KEY,
  type NamedTensor,
  parseSafetensors,
  readSafetensors,
  type SafetensorsFile,
  safetensorsHeaderBytes,
  writeSafetensors,
} from "./nn/safetensors.ts";
export {
  argmax,
  guidedLogits,
  sampleToken,
  type SamplingOptions,
  topIndices,
  validateSampling,
} from "./nn/sampling.ts";
export {
  DEFAULT_DECAY_FRACTION,
  DEFAULT_SCHEDULE,
  learningRate,
  meanSequenceLength,
  type ScheduleKind,
  type ScheduleOptions,
  sequenceLength,
  type SequenceStage,
  sequenceStages,
  type SequenceWarmup,
  stepsThatFit,
  type TimeLeft,
  wsdDecaySteps,
} from "./nn/schedule.ts";
export { Tape, type TapeNode } from "./nn/tape.ts";
export { Tensor } from "./nn/tensor.ts";

// Tokenizer: byte-level BPE, trained from scratch, read and written as Hugging Face JSON.
export {
  type AddedToken,
  AddedTokenSplitter,
  BpeTokenizer,
  type BpeTokenizerConfig,
  BYTE_ALPHABET,
  BYTE_TO_CHAR,
  bytesToSymbols,
  countWords,
  type DecodeOptions,
  DEFAULT_SPECIAL_TOKENS,
  type EncodeOptions,
  fromHfTokenizerJson,
  GPT2_SPLIT_PATTERN,
  GPT2_SPLIT_REGEX,
  type HfTokenizerJson,
  loadHfTokenizer,
  pretokenize,
  saveHfTokenizer,
  symbolsToBytes,
  type TextSegment,
  toHfTokenizerJson,
  trainBpe,
  type TrainBpeOptions,
  type TrainedBpe,
  WordCounter,
} from "./tokenizer/mod.ts";

// Pipeline: a function per stage, from raw text to a chat model, the main job over them all, and
// the chat page (web/) that runs the model in a browser.
export {
  type Batch,
  batchOfRows,
  BatchSampler,
  concatBatches,
  cutSequences,
  type RowRange,
  rowsOfBatch,
  type SamplerState,
  type ShapedBatch,
  splitRows,
} from "./pipeline/batches.ts";
export {
  DEFAULT_BUDGET,
  MAIN_JOB_STAGES,
  type MainJobPlanOptions,
  type MainJobStage,
  mainJobStages,
  type MeasuredPlan,
  planForBudget,
  planMainJob,
  PRETRAINING_OPTIMIZER,
  pretrainingSeqWarmup,
  probeThroughput,
  STAGE_ESTIMATES,
} from "./pipeline/budget.ts";
export {
  BUNDLED_ALPACA,
  BUNDLED_DATA_DIR,
  BUNDLED_FINEWEB,
  BUNDLED_INSTRUCT_DIR,
  BUNDLED_PRETRAIN_DIR,
  BUNDLED_SNAKES_QA,
  BUNDLED_SNAKES_QA_BRIEF,
  BUNDLED_STORIES,
} from "./pipeline/bundled_data.ts";
export {
  CHAT_GUIDANCE,
  type ChatManyOptions,
  type ChatOptions,
  chatReplies,
  chatReply,
} from "./pipeline/chat.ts";
export {
  chatDocument,
  type ChatEncodeOptions,
  chatMarkerIds,
  chatPrompt,
  chatPromptIds,
  chatResponse,
  chatResponseIds,
  type ChatTurn,
  IM_END,
  IM_START,
  type InstructionPair,
  userMessage,
} from "./pipeline/chatml.ts";
export { formatSizing, type ModelSizing, suggestModel } from "./pipeline/compute_params.ts";
export {
  EVAL_DEFAULTS,
  type EvalSummary,
  evaluateModel,
  type EvaluateOptions,
  formatEvalSummary,
  grammarScore,
  LINK_PARSER_INSTALL,
  type LinkGrammarOptions,
  linkGrammarVerdicts,
  linkParserAvailable,
  type LinkVerdict,
  type ValidationFigures,
} from "./pipeline/eval.ts";
export { EVAL_PROMPTS, EVAL_QUESTIONS, type EvalQuestion } from "./pipeline/eval_prompts.ts";
export {
  type AnswerRecord,
  type AnswerSample,
  type CompletionRecord,
  type CompletionSample,
  type EvalFigures,
  type ScoredSamples,
  type ScoreOptions,
  scoreSamples,
} from "./pipeline/eval_scores.ts";
export {
  FINETUNE_LR,
  finetuneInstruct,
  type FinetuneInstructOptions,
} from "./pipeline/finetune_instruct.ts";
export { type HubDataset, hubFileBuffer, listHubParquetFiles } from "./pipeline/hub.ts";
export {
  MAIN_JOB_DEFAULTS,
  type MainJobOptions,
  type MainJobResult,
  pretrainingLearningRate,
  runMainJob,
} from "./pipeline/main_job.ts";
export {
  type BudgetPlan,
  type BudgetPlanOptions,
  candidateShapes,
  checkTrainingTime,
  CHINCHILLA_TOKENS_PER_PARAMETER,
  expectedQuality,
  fitThroughput,
  formatDuration,
  formatPlan,
  type ModelShape,
  nonEmbeddingParameters,
  parseDuration,
  parseShape,
  planBudget,
  shapeConfig,
  type StageTime,
  type ThroughputModel,
  type ThroughputSample,
  trainingFlopsPerToken,
} from "./pipeline/plan.ts";
export {
  FINEWEB_SAMPLE_10BT,
  type MixtureSource,
  prepareDataset,
  type PrepareDatasetOptions,
  type PreparedDataset,
} from "./pipeline/prepare_dataset.ts";
export {
  INSTRUCT_CONTEXT,
  prepareDatasetInstruct,
  type PreparedInstruct,
  type PrepareInstructOptions,
} from "./pipeline/prepare_dataset_instruct.ts";
export {
  BUNDLED_SHARES,
  CLEAN_ANSWER_SOURCES,
  CLEAN_STORY_SOURCES,
  estimateSourceTokens,
  HUB_ROWS,
  type PretrainingSource,
  pretrainingSource,
  type SourceFlags,
  TUNING_ANSWER_SOURCES,
} from "./pipeline/pretraining_source.ts";
export {
  BRIEF_KINDS,
  briefPairs,
  isCleanSentence,
  sentences,
  type SourcedPair,
} from "./pipeline/brief_pairs.ts";
export {
  emaSmooth,
  type LoggedStep,
  readStepLog,
  type ReportFigure,
  type ReportFiles,
  type ReportOptions,
  type ReportPlan,
  type ReportSample,
  type ReportStage,
  type StepLogFile,
  writeReport,
} from "./pipeline/report.ts";
export {
  bundleChatPage,
  type ChatServer,
  serveChat,
  type ServeChatOptions,
} from "./pipeline/serve.ts";
export {
  formatSideBySide,
  type SideBySide,
  testInstruct,
  type TestInstructOptions,
} from "./pipeline/test_instruct.ts";
export {
  checkTokenizerMatches,
  type CompleteManyOptions,
  type CompleteOptions,
  completePrompt,
  completePrompts,
  type Prompt,
  testPretrained,
  type TestPretrainedOptions,
} from "./pipeline/test_pretrained.ts";
export {
  type AsyncBuffer,
  firstInvalidUtf8,
  linesOf,
  NotTextError,
  parquetRecordBatches,
  parquetTextBatches,
  readLines,
  readRecordBatches,
  readTextBatches,
  type RecordSourceOptions,
  type TextRecord,
  type TextSourceOptions,
} from "./pipeline/text_source.ts";
export {
  measureTrainThroughput,
  type ThroughputProbeOptions,
  type TrainThroughput,
} from "./pipeline/throughput_probe.ts";
export {
  loadTokenizedDataset,
  type TokenizedDataset,
  type TokenizedDatasetMeta,
  type TokenizeMethod,
  TokenRowWriter,
} from "./pipeline/token_rows.ts";
export {
  type DocumentMethod,
  resolveTokenizer,
  tokenizeDataset,
  type TokenizeDatasetOptions,
} from "./pipeline/tokenize_dataset.ts";
export {
  type FinalMix,
  meanOfLast,
  type StepLog,
  type StopReason,
  TRAIN_DEFAULTS,
  trainModel,
  type TrainModelOptions,
  type TrainResult,
} from "./pipeline/train_model.ts";
export {
  trainingTextBatches,
  trainTokenizer,
  type TrainTokenizerOptions,
} from "./pipeline/train_tokenizer.ts";
export {
  POSITION_BUCKET,
  validationLoss,
  type ValidationLosses,
  validationLosses,
  type ValidationOptions,
} from "./pipeline/validation_loss.ts";
export {
  type ChatModel,
  chatModelFromFiles,
  lastLogits,
  type Reply,
  type ReplyEnd,
  type ReplyOptions,
  streamChatReply,
} from "./web/chat_model.ts";

// Util: files written atomically, checksums, and the lock that gives a run folder one owner.
export { fnv1aWords } from "./util/checksum.ts";
export {
  checkOutputFile,
  checkOutputFolder,
  FolderOutput,
  type FolderOutputOptions,
  OUTPUT_MARKER,
  type OutputPlacement,
  parseJsonFile,
  readJsonFile,
  type StageOutput,
  writeAll,
  writeFileAtomic,
  writeOutputFile,
  writeTextFileAtomic,
} from "./util/files.ts";
export {
  acquireRunLock,
  LOCK_FILE,
  type LockOwner,
  ownerMayBeAlive,
  type RunLock,
  type RunLockOptions,
} from "./util/run_lock.ts";

// The Hugging Face GPT-2 format: `deno task export` writes a folder; every loader takes one.
export {
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  type HalfFormat,
  toHalfBits,
} from "./nn/half_float.ts";
export {
  HF_CONFIG_FILE,
  HF_WEIGHTS_FILE,
  type HfDtype,
  hfGpt2Config,
  type HfGpt2Weights,
  type HfTensorSpec,
  hfTensorSpecs,
  type HfTokenIds,
  isHfModelFolder,
  readHfGpt2,
  writeHfSafetensors,
} from "./nn/hf_gpt2.ts";
export {
  CHATML_TEMPLATE,
  exportHuggingFace,
  type ExportHuggingFaceOptions,
  type ExportHuggingFaceResult,
  HF_DTYPES,
  HF_EXPORT_FILES,
  measurePrecisionLoss,
  PRECISION_PROMPT,
  type PrecisionLoss,
} from "./pipeline/export_hf.ts";
