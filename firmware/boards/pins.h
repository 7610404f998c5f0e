// Pin maps, one block per board; platformio.ini picks one with -D ML_BOARD_... . Wiring in
// docs/FIRMWARE.md ("Boards and wiring").
#pragma once

#if defined(ML_BOARD_S3_DEVKIT_SX1262)
// ESP32-S3-DevKitC-1 N16R8 (16 MB flash, 8 MB octal PSRAM) wired to an SX1262 module (e.g. Ebyte E22-900M22S / Waveshare Core1262).
// GPIO 26-37 are taken by the octal flash and PSRAM; 0, 3, 45, 46 are strapping pins. None is used below.
#define ML_RADIO_SX1262 1
#define ML_PIN_LORA_SCK 12
#define ML_PIN_LORA_MISO 13
#define ML_PIN_LORA_MOSI 11
#define ML_PIN_LORA_NSS 10
#define ML_PIN_LORA_RST 5
#define ML_PIN_LORA_BUSY 4
#define ML_PIN_LORA_DIO1 6
#define ML_LORA_TCXO_VOLTS 1.8f  // 0 for a module with a crystal
#define ML_PIN_I2C_SDA 8
#define ML_PIN_I2C_SCL 9
#define ML_PIN_I2S_SCK 15  // INMP441 SCK (BCLK)
#define ML_PIN_I2S_WS 16   // INMP441 WS (LRCL)
#define ML_PIN_I2S_SD 17   // INMP441 SD (DOUT); L/R to GND: left channel
#define ML_PIN_WS2812 48   // the devkit's on-board RGB LED
#define ML_LED_IS_WS2812 1

#elif defined(ML_BOARD_HELTEC_V3)
// Heltec WiFi LoRa 32 V3 (ESP32-S3FN8, on-board SX1262 with TCXO, 8 MB flash, no PSRAM).
#define ML_RADIO_SX1262 1
#define ML_PIN_LORA_SCK 9
#define ML_PIN_LORA_MISO 11
#define ML_PIN_LORA_MOSI 10
#define ML_PIN_LORA_NSS 8
#define ML_PIN_LORA_RST 12
#define ML_PIN_LORA_BUSY 13
#define ML_PIN_LORA_DIO1 14
#define ML_LORA_TCXO_VOLTS 1.8f
#define ML_PIN_I2C_SDA 41  // the header's I2C (the OLED's bus is 17/18)
#define ML_PIN_I2C_SCL 42
#define ML_PIN_I2S_SCK 45
#define ML_PIN_I2S_WS 46
#define ML_PIN_I2S_SD 47
#define ML_PIN_WS2812 48   // an external WS2812 on GPIO 48 (the board's own LED is a plain white one on 35)
#define ML_LED_IS_WS2812 1
#define ML_PIN_VEXT 36     // LOW powers the OLED and the external header rail

#elif defined(ML_BOARD_S3_DEVKIT_SX1276)
// ESP32-S3-DevKitC-1 N16R8 wired to an SX1276 module (RFM95W): the same SPI pins, DIO0 for RX_DONE.
#define ML_RADIO_SX1276 1
#define ML_PIN_LORA_SCK 12
#define ML_PIN_LORA_MISO 13
#define ML_PIN_LORA_MOSI 11
#define ML_PIN_LORA_NSS 10
#define ML_PIN_LORA_RST 5
#define ML_PIN_LORA_DIO0 6
#define ML_PIN_LORA_DIO1 7
#define ML_PIN_I2C_SDA 8
#define ML_PIN_I2C_SCL 9
#define ML_PIN_I2S_SCK 15
#define ML_PIN_I2S_WS 16
#define ML_PIN_I2S_SD 17
#define ML_PIN_WS2812 48
#define ML_LED_IS_WS2812 1

#else
#error "no board: build with -D ML_BOARD_S3_DEVKIT_SX1262, ML_BOARD_HELTEC_V3 or ML_BOARD_S3_DEVKIT_SX1276 (platformio.ini does)"
#endif
